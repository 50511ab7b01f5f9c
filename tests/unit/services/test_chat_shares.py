"""Shared links to chats: who may make, list and revoke them, and what a link shows, until when."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
import pytest

from tests.unit.services.test_chats import EDITOR, T0, VIEWER, App
from whalli.domain.model.chats import (
    MESSAGE_MAX,
    Chat,
    Message,
    MessageRole,
    MessageStatus,
    TokenUsage,
)
from whalli.domain.model.errors import (
    ChatNotFound,
    InvalidInput,
    PermissionDenied,
    ShareLimitReached,
    ShareNotFound,
    ShareTooLarge,
)
from whalli.domain.model.shares import MAX_LIVE_SHARES, SHARE_MAX_CHARS, hash_share_token
from whalli.domain.model.users import User
from whalli.domain.services.chats.delete_chat import DeleteChat
from whalli.domain.services.chats.list_shares import ListChatShares, ListChatSharesHandler
from whalli.domain.services.chats.read_shared_chat import (
    ReadSharedChat,
    ReadSharedChatHandler,
    SharedChat,
)
from whalli.domain.services.chats.revoke_share import RevokeChatShare, RevokeChatShareHandler
from whalli.domain.services.chats.share_chat import NewShare, ShareChat, ShareChatHandler


class Shares:
    def __init__(self, app: App) -> None:
        self.app = app

    async def make(self, user: User, chat: Chat, expires_at: datetime | None = None) -> NewShare:
        handler = ShareChatHandler(self.app.uow(), self.app.clock, self.app.ids)
        command = ShareChat(user_id=user.id, chat_id=chat.id, expires_at=expires_at)
        return await handler.execute(command)

    async def list(self, user: User, chat: Chat) -> list[object]:
        handler = ListChatSharesHandler(self.app.uow(), self.app.clock)
        return list(await handler.execute(ListChatShares(user_id=user.id, chat_id=chat.id)))

    async def revoke(self, user: User, chat: Chat, made: NewShare) -> None:
        handler = RevokeChatShareHandler(self.app.uow(), self.app.clock)
        command = RevokeChatShare(user_id=user.id, chat_id=chat.id, share_id=made.share.id)
        await handler.execute(command)

    async def read(self, token: str) -> SharedChat:
        handler = ReadSharedChatHandler(self.app.uow(), self.app.clock)
        return await handler.execute(ReadSharedChat(token=token))


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def shares(app: App) -> Shares:
    return Shares(app)


async def reply(app: App, chat: Chat, content: str, status: MessageStatus) -> Message:
    now = app.clock.advance(timedelta(seconds=1))
    message = Message.pending_reply(
        id=app.ids.new_id(), chat_id=chat.id, model="openai/gpt-4o-mini", provider="openai",
        now=now,
    )  # fmt: skip
    if status.is_final:
        message.finish(status=status, content=content, usage=TokenUsage(), now=now, cost_usd=0.5)
    async with app.uow() as uow:
        await uow.chats.add_message(message)
        await uow.commit()
    return message


async def test_a_link_shows_the_finished_messages_of_its_time_and_nothing_private(
    app: App, shares: Shares
) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada, "Taxes")
    chat.instruct("Secret instructions", T0)
    async with app.uow() as uow:
        await uow.chats.update(chat)
        await uow.commit()
    await app.message(chat, "Why?", MessageRole.USER, T0)
    await reply(app, chat, "Because.", MessageStatus.COMPLETE)
    await app.message(chat, "And?", MessageRole.USER, T0 + timedelta(seconds=5))
    streaming = await reply(app, chat, "", MessageStatus.STREAMING)

    made = await shares.make(ada, chat)
    # after the link was made: the reply finishes and the chat goes on
    async with app.uow() as uow:
        streaming.finish(status=MessageStatus.COMPLETE, content="Later.", usage=TokenUsage(),
                         now=app.clock.now())  # fmt: skip
        await uow.chats.update_message(streaming)
        await uow.commit()
    await app.message(chat, "Later question", MessageRole.USER, T0 + timedelta(seconds=60))
    shown = await shares.read(made.token)

    assert made.share.message_count == 3
    assert shown.title == "Taxes"
    assert shown.model == "openai/gpt-4o-mini"
    assert shown.shared_at == made.share.created_at
    assert [(m.role, m.content) for m in shown.messages] == [
        (MessageRole.USER, "Why?"), (MessageRole.ASSISTANT, "Because."),
        (MessageRole.USER, "And?"),
    ]  # fmt: skip
    assert set(msgspec.structs.asdict(shown.messages[1])) == {
        "role", "content", "model", "created_at", "status", "reasoning",
    }  # fmt: skip
    assert "Secret instructions" not in msgspec.json.encode(shown).decode()


async def test_aborted_and_failed_replies_are_finished_and_shown(app: App, shares: Shares) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    await reply(app, chat, "Stopped", MessageStatus.ABORTED)
    await reply(app, chat, "Broken", MessageStatus.FAILED)
    await reply(app, chat, "", MessageStatus.PENDING)

    made = await shares.make(ada, chat)

    assert [m.content for m in (await shares.read(made.token)).messages] == ["Stopped", "Broken"]


async def test_only_the_tokens_hash_is_stored(app: App, shares: Shares) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)

    made = await shares.make(ada, chat)

    stored = app.store.tables["chat_shares"][made.share.id]
    assert len(made.token) >= 43
    assert stored.token_hash == hash_share_token(made.token) != made.token
    assert made.token not in repr(app.store.tables["chat_shares"])


async def test_owners_and_editors_share_viewers_get_403_and_strangers_404(
    app: App, shares: Shares
) -> None:
    ada, eve, vic, sam = [await app.user(n) for n in ("ada", "eve", "vic", "sam")]
    chat = await app.chat(await app.project(ada, (eve, EDITOR), (vic, VIEWER)), ada)

    await shares.make(ada, chat)
    await shares.make(eve, chat)
    with pytest.raises(PermissionDenied, match="write access needed"):
        await shares.make(vic, chat)
    with pytest.raises(ChatNotFound, match="Chat not found"):
        await shares.make(sam, chat)
    with pytest.raises(ChatNotFound, match="Chat not found"):
        await shares.make(ada, msgspec.structs.replace(chat, id=app.ids.new_id()))

    assert len(await shares.list(vic, chat)) == 2  # a viewer reads the list
    with pytest.raises(ChatNotFound, match="Chat not found"):
        await shares.list(sam, chat)


async def test_the_list_is_of_live_links_newest_first(app: App, shares: Shares) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    first = await shares.make(ada, chat)
    app.clock.advance(timedelta(seconds=1))
    second = await shares.make(ada, chat)
    app.clock.advance(timedelta(seconds=1))
    third = await shares.make(ada, chat)

    await shares.revoke(ada, chat, second)

    assert await shares.list(ada, chat) == [third.share, first.share]


async def test_a_revoked_link_answers_not_found(app: App, shares: Shares) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    made = await shares.make(ada, chat)
    assert (await shares.read(made.token)).title == chat.title

    await shares.revoke(ada, chat, made)

    with pytest.raises(ShareNotFound, match="no longer shared"):
        await shares.read(made.token)
    with pytest.raises(ShareNotFound, match="Shared link not found"):
        await shares.revoke(ada, chat, made)


@pytest.mark.parametrize("token", ["", "x", "a" * 43 + "/", "é" * 43, "a" * 500, "tok" + "0" * 40])
async def test_a_malformed_or_unknown_token_answers_not_found(
    app: App, shares: Shares, token: str
) -> None:
    ada = await app.user("ada")
    await shares.make(ada, await app.chat(await app.project(ada), ada))
    with pytest.raises(ShareNotFound, match="no longer shared"):
        await shares.read(token)


async def test_a_deleted_chats_links_answer_not_found(app: App, shares: Shares) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    made = await shares.make(ada, chat)

    await app.run(DeleteChat(user_id=ada.id, chat_id=chat.id))

    with pytest.raises(ShareNotFound, match="no longer shared"):
        await shares.read(made.token)
    assert app.store.tables["chat_shares"] == {}


async def test_owners_editors_and_the_creator_revoke_but_not_other_viewers(
    app: App, shares: Shares
) -> None:
    ada, eve, vic, val, sam = [await app.user(n) for n in ("ada", "eve", "vic", "val", "sam")]
    project = await app.project(ada, (eve, EDITOR), (vic, VIEWER), (val, VIEWER))
    chat = await app.chat(project, ada)
    by_ada, by_eve, by_eve_too = [await shares.make(u, chat) for u in (ada, eve, eve)]
    other_chat = await app.chat(project, ada)

    with pytest.raises(ChatNotFound, match="Chat not found"):
        await shares.revoke(sam, chat, by_ada)
    with pytest.raises(PermissionDenied, match="write access needed"):
        await shares.revoke(vic, chat, by_ada)
    with pytest.raises(ShareNotFound, match="Shared link not found"):
        await shares.revoke(ada, other_chat, by_ada)  # not that chat's link
    await shares.revoke(eve, chat, by_ada)  # an editor revokes anyone's
    await shares.revoke(ada, chat, by_eve)  # an owner too
    # the creator, since demoted to viewer, still revokes their own link
    async with app.uow() as uow:
        membership = await uow.projects.get_membership(project.id, eve.id)
        assert membership is not None
        await uow.projects.update_member(msgspec.structs.replace(membership, role=VIEWER))
        await uow.commit()
    with pytest.raises(PermissionDenied, match="write access needed"):
        await shares.make(eve, chat)
    with pytest.raises(PermissionDenied, match="write access needed"):
        await shares.revoke(val, chat, by_eve_too)
    await shares.revoke(eve, chat, by_eve_too)

    assert await shares.list(ada, chat) == []


async def test_a_chat_has_at_most_20_live_links(app: App, shares: Shares) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    made = [await shares.make(ada, chat) for _ in range(MAX_LIVE_SHARES)]

    with pytest.raises(ShareLimitReached, match="at most 20 shared links") as refused:
        await shares.make(ada, chat)
    assert refused.value.details == {"limit": 20}
    assert len(await shares.list(ada, chat)) == 20
    await shares.revoke(ada, chat, made[0])
    await shares.make(ada, chat)  # a revoked link frees its place
    assert len(await shares.list(ada, chat)) == 20


async def test_a_link_with_an_expiry_opens_until_then_and_is_then_gone_from_the_list(
    app: App, shares: Shares
) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    lasting = await shares.make(ada, chat)
    brief = await shares.make(ada, chat, expires_at=app.clock.now() + timedelta(days=7))
    assert brief.share.expires_at == app.clock.now() + timedelta(days=7)

    app.clock.advance(timedelta(days=7) - timedelta(seconds=1))
    assert (await shares.read(brief.token)).title == chat.title
    assert len(await shares.list(ada, chat)) == 2

    app.clock.advance(timedelta(seconds=1))
    with pytest.raises(ShareNotFound, match="no longer shared"):  # as a revoked one
        await shares.read(brief.token)
    assert await shares.list(ada, chat) == [lasting.share]
    assert (await shares.read(lasting.token)).title == chat.title


async def test_an_expired_link_frees_its_place_among_the_20(app: App, shares: Shares) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    soon = app.clock.now() + timedelta(hours=1)
    for _ in range(MAX_LIVE_SHARES):
        await shares.make(ada, chat, expires_at=soon)
    with pytest.raises(ShareLimitReached):
        await shares.make(ada, chat)

    app.clock.set(soon)
    await shares.make(ada, chat)
    assert len(await shares.list(ada, chat)) == 1


@pytest.mark.parametrize(
    ("expires_in", "message"),
    [
        (timedelta(0), "must be in the future"),
        (-timedelta(days=1), "must be in the future"),
        (timedelta(days=366), "at most 365 days away"),
    ],
)
async def test_an_expiry_not_ahead_or_too_far_is_refused_and_nothing_is_made(
    app: App, shares: Shares, expires_in: timedelta, message: str
) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    with pytest.raises(InvalidInput, match=message) as refused:
        await shares.make(ada, chat, expires_at=app.clock.now() + expires_in)
    assert refused.value.details == {"field": "expiresAt"}
    assert await shares.list(ada, chat) == []


async def test_an_expiry_without_a_utc_offset_is_refused(app: App, shares: Shares) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    naive = (app.clock.now() + timedelta(days=1)).replace(tzinfo=None)
    with pytest.raises(InvalidInput, match="UTC offset"):
        await shares.make(ada, chat, expires_at=naive)


async def test_a_link_shows_a_copy_that_later_edits_and_deletions_do_not_change(
    app: App, shares: Shares
) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada, "Taxes")
    question = await app.message(chat, "Why?", MessageRole.USER, app.clock.now())
    answer = await reply(app, chat, "Because.", MessageStatus.COMPLETE)
    made = await shares.make(ada, chat)
    shown = await shares.read(made.token)

    async with app.uow() as uow:  # the question edited, the answer deleted (a regeneration)
        stored = await uow.chats.get_message(question.id)
        stored.edit("Why not?", app.clock.now())
        await uow.chats.update_message(stored)
        await uow.chats.delete_message(answer.id)
        await uow.commit()

    assert await shares.read(made.token) == shown
    assert [(m.role, m.content) for m in shown.messages] == [
        (MessageRole.USER, "Why?"), (MessageRole.ASSISTANT, "Because."),
    ]  # fmt: skip


async def test_a_chat_too_long_to_copy_is_not_shared(app: App, shares: Shares) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    for _ in range(SHARE_MAX_CHARS // MESSAGE_MAX + 1):
        await app.message(chat, "x" * MESSAGE_MAX, MessageRole.USER, app.clock.now())

    with pytest.raises(ShareTooLarge, match="too long to share") as refused:
        await shares.make(ada, chat)
    assert refused.value.details == {"limit": SHARE_MAX_CHARS}
    assert await shares.list(ada, chat) == []
