"""Contract of ChatRepository.fail_abandoned_replies (the reply sweeper's statement), in memory
and on Postgres.

The database is shared with other tests and sessions, and the statement finishes every
abandoned reply it finds: each test creates its replies centuries back, earlier at every run
(as the attachment sweeper's tests do), and sweeps only up to a moment there, so it finishes no
one else's replies; it looks only at the ids it created.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import msgspec
import pytest

from whalli.domain.model.chats import Chat, Message, MessageStatus, TokenUsage
from whalli.domain.model.errors import InvalidInput
from whalli.ports.unit_of_work import UnitOfWork

from ..conftest import UowFactory
from ..entities import a_message, at, committed_world

ERROR = "The reply was interrupted."


def _long_ago() -> Callable[[float], datetime]:
    base = -10 * time.time()  # earlier than the replies of every earlier run

    def when(seconds: float) -> datetime:
        return at(base + seconds)

    return when


def _reply(chat: Chat, created_at: datetime, **changes: object) -> Message:
    reply = Message.pending_reply(
        id=uuid.uuid4(), chat_id=chat.id, model="m", provider="p", now=created_at
    )
    return msgspec.structs.replace(reply, **changes)


async def _sweep(
    uow: UnitOfWork, mine: list[Message], before: datetime, now: datetime, limit: int = 100
) -> list[UUID]:
    """The ids of ``mine`` that the call finished (it may find other runs' replies too)."""
    found = await uow.chats.fail_abandoned_replies(before, now, ERROR, limit=limit)
    return [i for i in found if i in {m.id for m in mine}]


async def test_old_unfinished_replies_end_failed_oldest_first_and_nothing_else_changes(
    uow_factory: UowFactory,
) -> None:
    when = _long_ago()
    world = await committed_world(uow_factory())
    oldest = _reply(world.chat, when(10))
    partial = _reply(
        world.chat, when(20), status=MessageStatus.STREAMING, content="Half an ans",
        usage=TokenUsage(prompt_tokens=5), ttft_ms=40,
    )  # fmt: skip
    recent = _reply(world.chat, when(50))
    finished = [
        _reply(world.chat, when(5), status=status, content="Done.")
        for status in (MessageStatus.COMPLETE, MessageStatus.ABORTED, MessageStatus.FAILED)
    ]
    user = msgspec.structs.replace(a_message(world.chat, now=when(5)), status=MessageStatus.PENDING)
    mine = [oldest, partial, recent, *finished, user]
    async with uow_factory() as uow:
        await uow.chats.add_messages(mine)
        await uow.commit()

    async def sweep(limit: int) -> list[UUID]:
        async with uow_factory() as uow:
            found = await _sweep(uow, mine, when(30), when(100), limit)
            await uow.commit()
        return found

    assert await sweep(limit=1) == [oldest.id]
    assert await sweep(limit=100) == [partial.id]
    assert await sweep(limit=100) == []

    async with uow_factory().read_only() as uow:
        for before in (oldest, partial):
            assert await uow.chats.get_message(before.id) == msgspec.structs.replace(
                before, status=MessageStatus.FAILED, finish_reason="error", error=ERROR,
                updated_at=when(100),
            )  # fmt: skip
        for untouched in (recent, *finished, user):
            assert await uow.chats.get_message(untouched.id) == untouched
        assert (await uow.usage.totals(world.user.id, since=at(0))).requests == 0
    async with uow_factory() as uow:
        with pytest.raises(InvalidInput, match="limit must not be negative"):
            await uow.chats.fail_abandoned_replies(when(30), when(100), ERROR, limit=-1)


async def test_a_reply_another_sweeper_holds_is_skipped_not_failed_twice(
    uow_factory: UowFactory,
) -> None:
    when = _long_ago()
    world = await committed_world(uow_factory())
    mine = [_reply(world.chat, when(s)) for s in range(10, 16)]
    async with uow_factory() as uow:
        await uow.chats.add_messages(mine)
        await uow.commit()

    async with uow_factory() as first, uow_factory() as second:
        held = await _sweep(first, mine, when(30), when(100), limit=4)
        # without waiting for the first sweeper, whose four replies stay locked
        rest = await _sweep(second, mine, when(30), when(100))
        await first.commit()
        await second.commit()
    assert held == [m.id for m in mine[:4]]
    assert rest == [m.id for m in mine[4:]]
    async with uow_factory() as later:
        assert await _sweep(later, mine, when(30), when(100)) == []


async def test_two_sweepers_at_once_fail_each_reply_once(uow_factory: UowFactory) -> None:
    when = _long_ago()
    world = await committed_world(uow_factory())
    mine = [_reply(world.chat, when(s)) for s in range(10, 30)]
    async with uow_factory() as uow:
        await uow.chats.add_messages(mine)
        await uow.commit()

    async def sweeper() -> list[UUID]:
        async with uow_factory() as uow:
            found = await _sweep(uow, mine, when(30), when(100))
            await uow.commit()
        return found

    results = await asyncio.gather(sweeper(), sweeper())

    assert sum(len(r) for r in results) == len(mine)
    assert sorted(i for r in results for i in r) == sorted(m.id for m in mine)


async def test_a_reply_updated_since_is_not_abandoned_however_old_it_is(
    uow_factory: UowFactory,
) -> None:
    when = _long_ago()
    world = await committed_world(uow_factory())
    alive = _reply(world.chat, when(0), status=MessageStatus.STREAMING, updated_at=when(50))
    dead = _reply(world.chat, when(10))
    async with uow_factory() as uow:
        await uow.chats.add_messages([alive, dead])
        await uow.commit()

    async with uow_factory() as uow:
        found = await _sweep(uow, [alive, dead], before=when(20), now=when(60))
        await uow.commit()

    assert found == [dead.id]
    async with uow_factory().read_only() as uow:
        assert (await uow.chats.get_message(alive.id)).status is MessageStatus.STREAMING


async def test_one_unfinished_reply_ends_failed_and_a_finished_one_stays(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    streaming = _reply(world.chat, at(1), status=MessageStatus.STREAMING, content="so far")
    done = _reply(world.chat, at(2))
    done.finish(status=MessageStatus.COMPLETE, content="all", now=at(3), usage=TokenUsage())
    question = a_message(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_messages([question, streaming, done])
        await uow.commit()

    async with uow_factory().autocommit() as uow:
        assert await uow.chats.fail_reply(streaming.id, at(9), ERROR)
        assert not await uow.chats.fail_reply(streaming.id, at(10), ERROR)  # final now
        assert not await uow.chats.fail_reply(done.id, at(9), ERROR)
        assert not await uow.chats.fail_reply(question.id, at(9), ERROR)
        assert not await uow.chats.fail_reply(uuid.uuid4(), at(9), ERROR)

    async with uow_factory().read_only() as uow:
        failed = await uow.chats.get_message(streaming.id)
        assert (failed.status, failed.content, failed.error) == (
            MessageStatus.FAILED, "so far", ERROR,
        )  # fmt: skip
        assert (failed.finish_reason, failed.updated_at) == ("error", at(9))
        assert await uow.chats.get_message(done.id) == done
        assert await uow.chats.get_message(question.id) == question
