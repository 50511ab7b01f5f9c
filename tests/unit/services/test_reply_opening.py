"""A start or a regeneration leaves its unit of work (its database connection goes back to the
pool) before it waits for the session's store; a store that fails then still cancels the
launched generation and leaves no session behind."""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import UUID

import msgspec
import pytest

from tests.integration.entities import World, committed_world
from tests.unit.services.test_images_outside_transaction import WatchedUnitOfWork
from tests.unit.services.test_start_chat_attachments import CATALOG
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import MessageStatus, TokenUsage
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.services.chat.context import PreparedReply
from whalli.domain.services.chat.regenerate_reply import RegenerateReply, RegenerateReplyHandler
from whalli.domain.services.chat.start_chat import StartChat, StartChatHandler


class SlowSessions(InMemoryChatSessionStore):
    """Answers a save only after the unit of work was left (or after 100 loop turns), and
    records whether it still had a block open then; ``fail`` makes the save fail after."""

    def __init__(self, clock: ManualClock, uow: WatchedUnitOfWork, *, fail: bool = False):
        super().__init__(clock)
        self.uow, self.fail = uow, fail
        self.open_when_answered: list[int] = []

    async def save(self, session: ChatSession, now: datetime) -> None:
        for _ in range(100):
            if self.uow.open == 0:
                break
            await asyncio.sleep(0)
        self.open_when_answered.append(self.uow.open)
        if self.fail:
            raise ServiceUnavailable("Redis is unavailable.")
        await super().save(session, now)


class Setup:
    def __init__(self, *, fail: bool = False) -> None:
        self.store, self.clock = MemoryStore(), ManualClock()
        self.uow = WatchedUnitOfWork(self.store)
        self.sessions = SlowSessions(self.clock, self.uow, fail=fail)
        self.launched: list[asyncio.Future[None]] = []

    def launch(
        self, session: ChatSession, prepared: PreparedReply, saved: asyncio.Future[None]
    ) -> None:
        self.launched.append(saved)

    def starter(self) -> StartChatHandler:
        return StartChatHandler(
            self.uow, self.sessions, CATALOG, frozenset({"dev"}), clock=self.clock,
            ids=SequentialIds(),
        )  # fmt: skip

    def regenerator(self) -> RegenerateReplyHandler:
        return RegenerateReplyHandler(
            self.uow, self.sessions, CATALOG, frozenset({"dev"}), clock=self.clock,
            ids=SequentialIds(start=1000),
        )  # fmt: skip


def hello(world: World, chat_id: UUID | None = None) -> StartChat:
    return StartChat(
        user_id=world.user.id, model="dev/echo", message="hello", project_id=world.project.id,
        chat_id=chat_id,
    )  # fmt: skip


async def finished_chat(setup: Setup, world: World) -> UUID:
    """A chat whose first reply finished, started through the plain unit of work."""
    plain = StartChatHandler(
        InMemoryUnitOfWork(setup.store), InMemoryChatSessionStore(setup.clock), CATALOG,
        frozenset({"dev"}), clock=setup.clock, ids=SequentialIds(start=500),
    )  # fmt: skip
    started = await plain.execute(hello(world))
    reply = msgspec.structs.replace(started.prepared.reply)
    reply.finish(
        status=MessageStatus.COMPLETE, content="hello", now=setup.clock.now(), usage=TokenUsage()
    )
    async with InMemoryUnitOfWork(setup.store) as uow:
        await uow.chats.update_message(reply)
        await uow.commit()
    return started.chat_id


async def open_reply(setup: Setup, world: World, way: str) -> ChatSession:
    """A reply opened the ``way`` named (a start of a new chat, a message in an existing one,
    a regeneration): its session."""
    if way == "new chat":
        return (await setup.starter().execute(hello(world), setup.launch)).session
    chat_id = await finished_chat(setup, world)
    if way == "existing chat":
        return (await setup.starter().execute(hello(world, chat_id), setup.launch)).session
    regenerate = RegenerateReply(user_id=world.user.id, chat_id=chat_id)
    return (await setup.regenerator().execute(regenerate, setup.launch)).session


WAYS = ["new chat", "existing chat", "regeneration"]


@pytest.mark.parametrize("way", WAYS)
async def test_the_unit_of_work_is_left_before_the_session_store_answers(way: str) -> None:
    setup = Setup()
    world = await committed_world(InMemoryUnitOfWork(setup.store))

    session = await open_reply(setup, world, way)

    assert setup.sessions.open_when_answered == [0]
    assert await setup.sessions.get(session.id) == session
    [saved] = setup.launched
    assert saved.done()
    assert not saved.cancelled()  # the generation may persist its reply


@pytest.mark.parametrize("way", WAYS)
async def test_a_session_store_failing_after_the_unit_of_work_cancels_the_generation(
    way: str,
) -> None:
    setup = Setup(fail=True)
    world = await committed_world(InMemoryUnitOfWork(setup.store))

    with pytest.raises(ServiceUnavailable):
        await open_reply(setup, world, way)

    [saved] = setup.launched
    assert saved.cancelled()
    assert setup.sessions.open_when_answered == [0]
    assert setup.uow.open == 0
