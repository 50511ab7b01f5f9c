"""Contract of ChatShareRepository (public links to chat snapshots), in memory and on Postgres."""

from __future__ import annotations

import secrets
import uuid

import pytest

from whalli.domain.model.chats import Chat, Message
from whalli.domain.model.errors import ChatNotFound, Conflict, UserNotFound
from whalli.domain.model.shares import ChatShare, hash_share_token
from whalli.domain.model.users import User

from ..conftest import UowFactory
from ..entities import NOW, a_chat, a_membership, a_message, a_user, at, committed_world


def a_share(
    chat: Chat, user: User, messages: list[Message] | None = None, *, seconds: float = 0,
    expires_after: float | None = None,
) -> ChatShare:  # fmt: skip
    expires_at = None if expires_after is None else at(seconds + expires_after)
    return ChatShare.create(
        id=uuid.uuid4(), chat_id=chat.id, created_by=user.id, token=secrets.token_urlsafe(32),
        title=chat.title, messages=messages or [], now=at(seconds), expires_at=expires_at,
    )  # fmt: skip


async def test_a_share_reads_back_equal_by_id_and_by_hash_with_its_snapshot(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    first, second = a_message(world.chat), a_message(world.chat, content="More")
    token = secrets.token_urlsafe(32)
    share = ChatShare.create(
        id=uuid.uuid4(), chat_id=world.chat.id, created_by=world.user.id, token=token,
        title="Shared as this", messages=[first, second], now=at(5),
    )  # fmt: skip
    async with uow_factory() as uow:
        await uow.chats.add_messages([first, second])
        await uow.shares.add(share)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.shares.find(share.id) == share
        assert await uow.shares.find_by_hash(hash_share_token(token)) == share
        assert await uow.shares.find_by_hash(token) is None  # the token itself is not stored
        assert await uow.shares.find_by_hash(hash_share_token("another")) is None
        assert await uow.shares.find(uuid.uuid4()) is None
    assert [(m.role, m.content, m.created_at) for m in share.messages] == [
        (first.role, first.content, first.created_at),
        (second.role, "More", second.created_at),
    ]
    assert share.token_hash != token


async def test_an_empty_snapshot_reads_back_empty(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    share = a_share(world.chat, world.user)
    async with uow_factory() as uow:
        await uow.shares.add(share)
        await uow.commit()
    async with uow_factory() as uow:
        found = await uow.shares.find(share.id)
    assert found is not None
    assert found.messages == ()


async def test_a_share_needs_its_chat_and_its_creator_and_a_free_hash(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    stored = a_share(world.chat, world.user)
    async with uow_factory() as uow:
        await uow.shares.add(stored)
        await uow.commit()
    with pytest.raises(ChatNotFound, match="Chat not found"):
        async with uow_factory() as uow:
            await uow.shares.add(a_share(a_chat(world.project, world.user), world.user))
    with pytest.raises(UserNotFound, match="User not found"):
        async with uow_factory() as uow:
            await uow.shares.add(a_share(world.chat, a_user()))
    twin = a_share(world.chat, world.user)
    twin.token_hash = stored.token_hash
    with pytest.raises(Conflict, match="conflicts with the current state"):
        async with uow_factory() as uow:
            await uow.shares.add(twin)
    async with uow_factory() as uow:
        assert await uow.shares.list_live(world.chat.id, NOW) == [stored]


async def test_live_shares_are_listed_newest_first_counted_and_revoked_once(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    other = await committed_world(uow_factory())
    old, new, gone = (a_share(world.chat, world.user, seconds=s) for s in (1, 3, 2))
    elsewhere = a_share(other.chat, other.user)
    async with uow_factory() as uow:
        for share in (old, new, gone, elsewhere):
            await uow.shares.add(share)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.shares.count_live(world.chat.id, NOW) == 3
        assert await uow.shares.revoke(gone.id, at(10)) is True
        assert await uow.shares.revoke(gone.id, at(11)) is False  # already revoked
        assert await uow.shares.revoke(uuid.uuid4(), at(11)) is False
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.shares.list_live(world.chat.id, NOW) == [new, old]
        assert await uow.shares.count_live(world.chat.id, NOW) == 2
        assert await uow.shares.count_live(other.chat.id, NOW) == 1
        assert await uow.shares.count_live(uuid.uuid4(), NOW) == 0
        revoked = await uow.shares.find(gone.id)
    assert revoked is not None
    assert revoked.revoked_at == at(10)
    assert not revoked.is_live


async def test_a_revocation_not_committed_is_rolled_back(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    share = a_share(world.chat, world.user)
    async with uow_factory() as uow:
        await uow.shares.add(share)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.shares.revoke(share.id, at(1)) is True
    async with uow_factory() as uow:
        assert await uow.shares.list_live(world.chat.id, NOW) == [share]


async def test_deleting_the_chat_deletes_its_shares(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    share = a_share(world.chat, world.user)
    async with uow_factory() as uow:
        await uow.shares.add(share)
        await uow.commit()
    async with uow_factory() as uow:
        await uow.chats.delete(world.chat.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.shares.find(share.id) is None
        assert await uow.shares.find_by_hash(share.token_hash) is None
        assert await uow.shares.count_live(world.chat.id, NOW) == 0


async def test_a_link_past_its_expiry_is_neither_listed_nor_counted_but_reads_back(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    lasting = a_share(world.chat, world.user, seconds=1)
    brief = a_share(world.chat, world.user, seconds=2, expires_after=60)  # until at(62)
    async with uow_factory() as uow:
        await uow.shares.add(lasting)
        await uow.shares.add(brief)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.shares.list_live(world.chat.id, at(61)) == [brief, lasting]
        assert await uow.shares.count_live(world.chat.id, at(61)) == 2
        assert await uow.shares.list_live(world.chat.id, at(62)) == [lasting]  # expired then
        assert await uow.shares.count_live(world.chat.id, at(3600)) == 1
        stored = await uow.shares.find_by_hash(brief.token_hash)
    assert stored == brief
    assert stored.expires_at == at(62)
    assert (stored.opens_at(at(61)), stored.opens_at(at(62))) == (True, False)


async def test_revoking_a_projects_links_revokes_each_of_its_chats_not_revoked_yet_only(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    other = await committed_world(uow_factory())
    second = a_chat(world.project, world.user)
    first_link, expired = (
        a_share(world.chat, world.user),
        a_share(world.chat, world.user, expires_after=1),
    )
    second_link, earlier = a_share(second, world.user), a_share(second, world.user)
    elsewhere = a_share(other.chat, other.user)
    async with uow_factory() as uow:
        await uow.chats.add(second)
        for share in (first_link, expired, second_link, earlier, elsewhere):
            await uow.shares.add(share)
        assert await uow.shares.revoke(earlier.id, at(5)) is True
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.shares.revoke_all_in_project(world.project.id, at(10)) == 3
        assert await uow.shares.revoke_all_in_project(world.project.id, at(11)) == 0
        await uow.commit()

    async with uow_factory() as uow:
        revoked = [await uow.shares.find(s.id) for s in (first_link, expired, second_link)]
        assert [s.revoked_at if s else None for s in revoked] == [at(10)] * 3
        kept = await uow.shares.find(earlier.id)
        assert kept is not None
        assert kept.revoked_at == at(5)  # revoked before: its time stays
        assert await uow.shares.list_live(other.chat.id, NOW) == [elsewhere]


async def test_revoking_a_creators_links_revokes_theirs_in_every_chat_not_revoked_yet_only(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    other = await committed_world(uow_factory())
    theirs, expired = (
        a_share(other.chat, other.user),
        a_share(world.chat, other.user, expires_after=1),
    )
    earlier, kept = a_share(other.chat, other.user), a_share(world.chat, world.user)
    async with uow_factory() as uow:
        for share in (theirs, expired, earlier, kept):
            await uow.shares.add(share)
        assert await uow.shares.revoke(earlier.id, at(5)) is True
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.shares.revoke_all_by_creator(other.user.id, at(10)) == 2
        assert await uow.shares.revoke_all_by_creator(other.user.id, at(11)) == 0
        assert await uow.shares.revoke_all_by_creator(uuid.uuid4(), at(11)) == 0
        await uow.commit()

    async with uow_factory() as uow:
        revoked = [await uow.shares.find(s.id) for s in (theirs, expired, earlier)]
        assert [s.revoked_at if s else None for s in revoked] == [at(10), at(10), at(5)]
        assert await uow.shares.list_live(world.chat.id, NOW) == [kept]


async def test_revoking_a_creators_links_in_a_project_spares_their_others_and_other_creators(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    other = await committed_world(uow_factory())
    second = a_chat(world.project, world.user)
    first_link, expired = (
        a_share(world.chat, other.user),
        a_share(second, other.user, expires_after=1),
    )
    earlier, by_owner = a_share(second, other.user), a_share(world.chat, world.user)
    elsewhere = a_share(other.chat, other.user)  # theirs, in another project
    async with uow_factory() as uow:
        await uow.projects.add_member(a_membership(world.project, other.user))
        await uow.chats.add(second)
        for share in (first_link, expired, earlier, by_owner, elsewhere):
            await uow.shares.add(share)
        assert await uow.shares.revoke(earlier.id, at(5)) is True
        await uow.commit()

    async with uow_factory() as uow:
        revoke = uow.shares.revoke_all_by_creator_in_project
        assert await revoke(world.project.id, other.user.id, at(10)) == 2
        assert await revoke(world.project.id, other.user.id, at(11)) == 0
        assert await revoke(other.project.id, world.user.id, at(11)) == 0
        assert await revoke(uuid.uuid4(), other.user.id, at(11)) == 0
        await uow.commit()

    async with uow_factory() as uow:
        revoked = [await uow.shares.find(s.id) for s in (first_link, expired, earlier)]
        assert [s.revoked_at if s else None for s in revoked] == [at(10), at(10), at(5)]
        assert await uow.shares.list_live(world.chat.id, NOW) == [by_owner]
        assert await uow.shares.list_live(other.chat.id, NOW) == [elsewhere]
