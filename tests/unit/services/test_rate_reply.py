"""RateReply: each reader's own thumbs up or down (and comment) on a finished reply."""

from __future__ import annotations

import msgspec
import pytest

from tests.unit.services.test_chats import T0, VIEWER, App
from whalli.adapters.memory.chat_metrics import InMemoryChatMetrics
from whalli.domain.model.chats import Message, MessageRole
from whalli.domain.model.errors import (
    ChatNotFound,
    InvalidInput,
    MessageNotFound,
    ReplyInProgress,
)
from whalli.domain.model.feedback import Feedback, Rating
from whalli.domain.services.chats.get_chat import GetChat
from whalli.domain.services.chats.rate_reply import RateReply, RateReplyHandler


@pytest.fixture
def app() -> App:
    return App()


async def rate(
    app: App, command: RateReply, metrics: InMemoryChatMetrics | None = None
) -> Feedback | None:
    handler = RateReplyHandler(app.uow(), app.clock, metrics or InMemoryChatMetrics())
    return await handler.execute(command)


async def test_each_reader_rates_a_reply_and_sees_only_their_own(app: App) -> None:
    ada, vic = await app.user("ada"), await app.user("vic")
    chat = await app.chat(await app.project(ada, (vic, VIEWER)), ada)
    await app.message(chat, "Why?", MessageRole.USER, T0)
    reply = await app.message(chat, "Because.", MessageRole.ASSISTANT, T0)
    base = RateReply(user_id=ada.id, chat_id=chat.id, message_id=reply.id, rating=Rating.UP)

    mine = await rate(app, msgspec.structs.replace(base, comment="  Clear.  "))
    app.clock.advance(30)
    theirs = await rate(app, msgspec.structs.replace(base, user_id=vic.id, rating=Rating.DOWN))
    changed = await rate(app, msgspec.structs.replace(base, rating=Rating.DOWN))

    assert mine is not None
    assert mine.comment == "Clear."
    assert theirs is not None
    assert theirs.rating is Rating.DOWN
    assert changed is not None
    assert (changed.rating, changed.comment) == (Rating.DOWN, None)
    assert (changed.created_at, changed.updated_at) == (mine.created_at, app.clock.now())
    seen_by_ada = await app.run(GetChat(user_id=ada.id, chat_id=chat.id))
    assert seen_by_ada.feedback == {reply.id: changed}
    seen_by_vic = await app.run(GetChat(user_id=vic.id, chat_id=chat.id))
    assert seen_by_vic.feedback == {reply.id: theirs}

    assert await rate(app, msgspec.structs.replace(base, rating=None)) is None
    assert await rate(app, msgspec.structs.replace(base, rating=None)) is None  # idempotent
    assert (await app.run(GetChat(user_id=ada.id, chat_id=chat.id))).feedback == {}


async def test_only_a_finished_assistant_reply_of_that_chat_is_rated(app: App) -> None:
    ada, sam = await app.user("ada"), await app.user("sam")
    project = await app.project(ada)
    chat, other_chat = await app.chat(project, ada), await app.chat(project, ada)
    question = await app.message(chat, "Why?", MessageRole.USER, T0)
    elsewhere = await app.message(other_chat, "There.", MessageRole.ASSISTANT, T0)
    pending = Message.pending_reply(
        id=app.ids.new_id(), chat_id=chat.id, model="dev/echo", provider="dev", now=T0
    )
    async with app.uow() as uow:
        await uow.chats.add_message(pending)
        await uow.commit()

    metrics = InMemoryChatMetrics()

    def on(message_id: object, **kw: object) -> RateReply:
        fields = {"user_id": ada.id, "chat_id": chat.id, "message_id": message_id,
                  "rating": Rating.UP, **kw}  # fmt: skip
        return msgspec.convert(fields, RateReply)

    with pytest.raises(MessageNotFound):
        await rate(app, on(question.id), metrics)
    with pytest.raises(MessageNotFound):
        await rate(app, on(elsewhere.id), metrics)
    with pytest.raises(MessageNotFound):
        await rate(app, on(app.ids.new_id()), metrics)
    with pytest.raises(ReplyInProgress):
        await rate(app, on(pending.id), metrics)
    with pytest.raises(ChatNotFound):
        await rate(app, on(elsewhere.id, user_id=sam.id, chat_id=other_chat.id), metrics)
    with pytest.raises(InvalidInput, match="at most 2000 characters"):
        await rate(app, on(elsewhere.id, chat_id=other_chat.id, comment="x" * 2001), metrics)
    assert app.store.tables["message_feedback"] == {}
    assert metrics.ratings == {}  # a refused rating is not counted


async def test_each_stored_rating_is_counted_by_model_and_rating(app: App) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    reply = Message(
        id=app.ids.new_id(), chat_id=chat.id, role=MessageRole.ASSISTANT, content="Because.",
        model="openai/gpt-4o-mini", provider="openai", created_at=T0, updated_at=T0,
    )  # fmt: skip
    async with app.uow() as uow:
        await uow.chats.add_message(reply)
        await uow.commit()
    metrics = InMemoryChatMetrics()
    base = RateReply(user_id=ada.id, chat_id=chat.id, message_id=reply.id, rating=Rating.UP)

    await rate(app, base, metrics)
    assert metrics.ratings == {("openai/gpt-4o-mini", "up"): 1}
    await rate(app, msgspec.structs.replace(base, rating=Rating.DOWN, comment="meh"), metrics)
    await rate(app, msgspec.structs.replace(base, rating=None), metrics)
    await rate(app, msgspec.structs.replace(base, rating=None), metrics)  # nothing to remove

    assert metrics.ratings == {
        ("openai/gpt-4o-mini", "up"): 1, ("openai/gpt-4o-mini", "down"): 1,
        ("openai/gpt-4o-mini", "removed"): 1,
    }  # fmt: skip
    assert all(str(ada.id) not in label for key in metrics.ratings for label in key)
