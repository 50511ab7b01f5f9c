"""Contract of ChatRepository's earlier versions of replies (what a regeneration replaced), and
of ChatSearch leaving them out, in memory and on Postgres."""

from __future__ import annotations

import uuid

import pytest

from whalli.adapters.memory.chat_search import InMemoryChatSearch
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.postgres.chat_search import PostgresChatSearch
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.chats import Chat, Message, MessageStatus, TokenUsage
from whalli.domain.model.errors import InvalidInput, MessageNotFound
from whalli.domain.model.feedback import Feedback, Rating
from whalli.ports.chat_search import ChatSearch
from whalli.ports.unit_of_work import UnitOfWork

from ..conftest import UowFactory
from ..entities import World, a_message, at, committed_world

Backend = tuple[UowFactory, ChatSearch]


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        store = MemoryStore()
        return (lambda: InMemoryUnitOfWork(store)), InMemoryChatSearch(store)
    pool: PostgresPool = request.getfixturevalue("pg_pool")
    return (lambda: PostgresUnitOfWork(pool)), PostgresChatSearch(pool)


def a_reply(chat: Chat, content: str, seconds: float) -> Message:
    reply = Message.pending_reply(
        id=uuid.uuid4(), chat_id=chat.id, model="openai/gpt-4o-mini", provider="openai",
        now=at(seconds),
    )  # fmt: skip
    reply.finish(
        status=MessageStatus.COMPLETE, content=content, usage=TokenUsage(prompt_tokens=3),
        now=at(seconds + 0.5), finish_reason="stop", reasoning=f"thinking of {content}",
    )  # fmt: skip
    return reply


async def _exchange(
    uow_factory: UowFactory, world: World, *replies: str
) -> tuple[Message, list[Message]]:
    """A question with one reply per text (generated in that order), all in the conversation."""
    question = a_message(world.chat, now=at(1), content="Which colour?")
    answers = [a_reply(world.chat, text, 2 + i) for i, text in enumerate(replies)]
    async with uow_factory() as uow:
        await uow.chats.add_messages([question, *answers])
        await uow.commit()
    return question, answers


async def test_a_superseded_reply_leaves_the_conversation_and_reads_back_as_a_version(
    backend: Backend,
) -> None:
    uow_factory, _ = backend
    world = await committed_world(uow_factory())
    question, (old, new) = await _exchange(uow_factory, world, "Blue.", "Green.")
    async with uow_factory() as uow:
        await uow.chats.supersede_reply(
            old.id, question_id=question.id, asked="Which colour? (first)", now=at(9), keep=20
        )
        await uow.commit()
    async with uow_factory() as uow:
        assert [m.id for m in await uow.chats.list_messages(world.chat.id)] == [question.id, new.id]
        [version] = await uow.chats.list_versions(question.id)
        assert version == await uow.chats.get_version(old.id)
        assert version.reply == old  # every field as stored, reasoning and usage included
        assert (version.question_id, version.asked, version.replaced_at) == (
            question.id, "Which colour? (first)", at(9),
        )  # fmt: skip
        assert await uow.chats.version_counts(world.chat.id) == {question.id: 1}
        assert await uow.chats.get_message(old.id) == old  # still a message of the chat


async def test_only_versions_are_versions_and_a_reply_is_superseded_once(backend: Backend) -> None:
    uow_factory, _ = backend
    world = await committed_world(uow_factory())
    question, (old, new) = await _exchange(uow_factory, world, "Blue.", "Green.")
    async with uow_factory() as uow:
        for missing in (new.id, question.id, uuid.uuid4()):
            with pytest.raises(MessageNotFound):
                await uow.chats.get_version(missing)
            with pytest.raises(MessageNotFound):
                await uow.chats.restore_version(missing)
        with pytest.raises(MessageNotFound):
            await uow.chats.supersede_reply(
                uuid.uuid4(), question_id=question.id, asked="?", now=at(9), keep=20
            )
        await uow.chats.supersede_reply(
            old.id, question_id=question.id, asked="?", now=at(9), keep=20
        )
        with pytest.raises(MessageNotFound):
            await uow.chats.supersede_reply(
                old.id, question_id=question.id, asked="?", now=at(10), keep=20
            )
        with pytest.raises(InvalidInput):
            await uow.chats.supersede_reply(
                new.id, question_id=question.id, asked="?", now=at(10), keep=-1
            )
    async with uow_factory() as uow:  # nothing was committed
        assert await uow.chats.list_versions(question.id) == []
        assert await uow.chats.version_counts(world.chat.id) == {}


async def test_a_restored_version_is_back_in_the_conversation_in_its_place(
    backend: Backend,
) -> None:
    uow_factory, _ = backend
    world = await committed_world(uow_factory())
    question, (old, new) = await _exchange(uow_factory, world, "Blue.", "Green.")
    async with uow_factory() as uow:
        await uow.chats.supersede_reply(
            old.id, question_id=question.id, asked="?", now=at(9), keep=20
        )
        await uow.commit()
    async with uow_factory() as uow:
        await uow.chats.restore_version(old.id)
        await uow.chats.supersede_reply(
            new.id, question_id=question.id, asked="Which colour?", now=at(10), keep=20
        )
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.chats.list_messages(world.chat.id) == [question, old]
        [version] = await uow.chats.list_versions(question.id)
        assert (version.reply, version.replaced_at) == (new, at(10))


async def test_only_the_versions_generated_last_are_kept_with_their_feedback_gone(
    backend: Backend,
) -> None:
    uow_factory, _ = backend
    world = await committed_world(uow_factory())
    texts = [f"Answer {i}." for i in range(5)]
    question, answers = await _exchange(uow_factory, world, *texts)
    first = answers[0]
    async with uow_factory() as uow:
        await uow.feedback.put(
            Feedback.give(
                message_id=first.id, user_id=world.user.id, rating=Rating.DOWN, comment=None,
                now=at(20), earlier=None,
            )
        )  # fmt: skip
        await uow.commit()
    async with uow_factory() as uow:
        for i, reply in enumerate(answers[:4]):
            await uow.chats.supersede_reply(
                reply.id, question_id=question.id, asked="?", now=at(30 + i), keep=2
            )
        await uow.commit()
    async with uow_factory() as uow:
        kept = [v.reply.id for v in await uow.chats.list_versions(question.id)]
        assert kept == [answers[2].id, answers[3].id]
        assert await uow.chats.version_counts(world.chat.id) == {question.id: 2}
        with pytest.raises(MessageNotFound):
            await uow.chats.get_message(first.id)
        assert await uow.feedback.find(first.id, world.user.id) is None
        assert await uow.chats.list_messages(world.chat.id) == [question, answers[4]]


async def test_versions_are_counted_per_question_and_go_with_their_chat(backend: Backend) -> None:
    uow_factory, _ = backend
    world = await committed_world(uow_factory())
    q1, (a, b) = await _exchange(uow_factory, world, "One.", "Two.")
    q2 = a_message(world.chat, now=at(5), content="And then?")
    c, d, e = (a_reply(world.chat, t, 6 + i) for i, t in enumerate(("Three.", "Four.", "Five.")))
    async with uow_factory() as uow:
        await uow.chats.add_messages([q2, c, d, e])
        await uow.chats.supersede_reply(a.id, question_id=q1.id, asked="?", now=at(9), keep=20)
        await uow.chats.supersede_reply(c.id, question_id=q2.id, asked="?", now=at(9), keep=20)
        await uow.chats.supersede_reply(d.id, question_id=q2.id, asked="?", now=at(9), keep=20)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.chats.version_counts(world.chat.id) == {q1.id: 1, q2.id: 2}
        assert [m.id for m in await uow.chats.list_messages(world.chat.id)] == [
            q1.id,
            b.id,
            q2.id,
            e.id,
        ]
        await uow.chats.delete(world.chat.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.chats.list_versions(q2.id) == []
        with pytest.raises(MessageNotFound):
            await uow.chats.get_version(c.id)


async def test_search_does_not_find_an_earlier_version(backend: Backend, unique: str) -> None:
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    question, (old, _) = await _exchange(
        uow_factory, world, f"okapi{unique} grazes", f"giraffe{unique} grazes"
    )
    assert [h.chat_id for h in await search.search(world.user.id, f"okapi{unique}")] == [
        world.chat.id
    ]
    async with uow_factory() as uow:
        await uow.chats.supersede_reply(
            old.id, question_id=question.id, asked="?", now=at(9), keep=20
        )
        await uow.commit()
    assert await search.search(world.user.id, f"okapi{unique}") == []
    assert [h.chat_id for h in await search.search(world.user.id, f"giraffe{unique}")] == [
        world.chat.id
    ]


async def test_at_the_cap_the_reply_just_replaced_stays_however_old_it_is(
    backend: Backend,
) -> None:
    """As a restore of the oldest version then a regeneration would: that reply, replaced
    again, is kept (it was generated first: by age alone it would go at once)."""
    uow_factory, _ = backend
    world = await committed_world(uow_factory())
    question, (first, second, third) = await _exchange(uow_factory, world, "1.", "2.", "3.")

    async def supersede(reply: Message, seconds: float, uow: UnitOfWork) -> None:
        await uow.chats.supersede_reply(
            reply.id, question_id=question.id, asked="?", now=at(seconds), keep=2
        )

    async with uow_factory() as uow:
        await supersede(first, 10, uow)
        await supersede(second, 11, uow)
        await uow.chats.restore_version(first.id)
        await supersede(third, 12, uow)
        await supersede(first, 13, uow)  # the first generated, replaced just now
        await uow.commit()
    async with uow_factory() as uow:
        kept = [v.reply.id for v in await uow.chats.list_versions(question.id)]
        assert kept == [first.id, third.id]  # in the order generated; `second` went
