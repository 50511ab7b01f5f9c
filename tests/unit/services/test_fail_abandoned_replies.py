"""The reply sweeper on in-memory adapters: replies whose generator died end failed, once."""

from __future__ import annotations

import uuid
from datetime import timedelta

import msgspec
import pytest

from tests.integration.entities import World, a_message, at, committed_world
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.chats import Message, MessageStatus, TokenUsage
from whalli.domain.model.replies import INTERRUPTED_MESSAGE as INTERRUPTED
from whalli.domain.services.chats.fail_abandoned_replies import FailAbandonedReplies


class Replies:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()

    def sweeper(self, batch: int = 100) -> FailAbandonedReplies:
        return FailAbandonedReplies(
            InMemoryUnitOfWork(self.store), self.clock, older_than=timedelta(hours=1), batch=batch
        )

    def reply(self, world: World, **changes: object) -> Message:
        pending = Message.pending_reply(
            id=uuid.uuid4(), chat_id=world.chat.id, model="m", provider="p", now=self.clock.now()
        )
        return msgspec.structs.replace(pending, **changes)

    async def store_all(self, *messages: Message) -> None:
        async with InMemoryUnitOfWork(self.store) as uow:
            await uow.chats.add_messages(messages)
            await uow.commit()

    async def read(self, message_id: uuid.UUID) -> Message:
        async with InMemoryUnitOfWork(self.store).read_only() as uow:
            return await uow.chats.get_message(message_id)


@pytest.fixture
def replies() -> Replies:
    return Replies()


async def test_an_old_unfinished_reply_ends_failed_keeping_its_content(replies: Replies) -> None:
    world = await committed_world(InMemoryUnitOfWork(replies.store))
    pending = replies.reply(world)
    streaming = replies.reply(
        world, status=MessageStatus.STREAMING, content="Half an ans", ttft_ms=40,
        usage=TokenUsage(prompt_tokens=5),
    )  # fmt: skip
    await replies.store_all(pending, streaming)
    now = replies.clock.advance(timedelta(hours=1, seconds=1))

    assert await replies.sweeper().execute() == 2

    for before in (pending, streaming):
        expected = msgspec.structs.replace(
            before, status=MessageStatus.FAILED, finish_reason="error", error=INTERRUPTED,
            updated_at=now,
        )  # fmt: skip
        assert await replies.read(before.id) == expected
    async with InMemoryUnitOfWork(replies.store).read_only() as uow:
        totals = await uow.usage.totals(world.user.id, since=at(0))
    assert totals.requests == 0  # tokens unknown: no usage recorded
    assert await replies.sweeper().execute() == 0  # failed once, never again


async def test_recent_finished_and_user_messages_are_left_alone(replies: Replies) -> None:
    world = await committed_world(InMemoryUnitOfWork(replies.store))
    finished = [
        replies.reply(world, status=status, content="Done.")
        for status in (MessageStatus.COMPLETE, MessageStatus.ABORTED, MessageStatus.FAILED)
    ]
    # a user message is never a reply, even in a status a reply could be stuck in
    user = msgspec.structs.replace(
        a_message(world.chat, now=replies.clock.now()), status=MessageStatus.PENDING
    )
    await replies.store_all(*finished, user)
    replies.clock.advance(timedelta(minutes=30))
    recent = replies.reply(world)  # created 30 minutes after the others
    await replies.store_all(recent)
    replies.clock.advance(timedelta(minutes=31))  # the others are 61 minutes old, recent 31

    assert await replies.sweeper().execute() == 0

    for message in (*finished, user, recent):
        assert await replies.read(message.id) == message


async def test_a_run_ends_at_most_a_batch_of_replies_oldest_first(replies: Replies) -> None:
    world = await committed_world(InMemoryUnitOfWork(replies.store))
    oldest = replies.reply(world)
    replies.clock.advance(1)
    older = replies.reply(world)
    replies.clock.advance(1)
    old = replies.reply(world)
    await replies.store_all(old, oldest, older)
    replies.clock.advance(timedelta(hours=2))

    assert await replies.sweeper(batch=2).execute() == 2
    statuses = [(await replies.read(m.id)).status for m in (oldest, older, old)]
    assert statuses == [MessageStatus.FAILED, MessageStatus.FAILED, MessageStatus.PENDING]

    assert await replies.sweeper(batch=2).execute() == 1
    assert (await replies.read(old.id)).status is MessageStatus.FAILED


async def test_a_long_reply_that_still_checkpoints_its_progress_is_left_alone(
    replies: Replies,
) -> None:
    """Created long ago but updated recently: its generator is alive (a progress checkpoint)."""
    world = await committed_world(InMemoryUnitOfWork(replies.store))
    alive, dead = replies.reply(world), replies.reply(world)
    await replies.store_all(alive, dead)
    replies.clock.advance(timedelta(minutes=59))
    async with InMemoryUnitOfWork(replies.store).autocommit() as uow:
        assert await uow.chats.save_progress(alive.id, "Still going", replies.clock.now())
    replies.clock.advance(timedelta(minutes=2))  # both created 61 minutes ago

    assert await replies.sweeper().execute() == 1

    assert (await replies.read(alive.id)).status is MessageStatus.STREAMING
    assert (await replies.read(dead.id)).status is MessageStatus.FAILED
