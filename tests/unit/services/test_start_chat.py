"""StartChat's commit and its session, stored at the same time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import msgspec
import pytest

from tests.integration.entities import World, committed_world
from tests.unit.services.test_start_chat_attachments import CATALOG
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.chats import InMemoryChatRepository
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import Chat, Message, MessageRole, PromptMessage
from whalli.domain.model.errors import InvalidInput, ProjectNotFound, ServiceUnavailable
from whalli.domain.services.chat.context import PreparedReply
from whalli.domain.services.chat.start_chat import StartChat, StartChatHandler


class FailingNewChat(InMemoryChatRepository):
    async def add_with_messages(self, chat: Chat, messages: Sequence[Message]) -> None:
        await super().add_with_messages(chat, messages)  # the statement fails as it runs
        raise ServiceUnavailable("The database is unavailable.")


class FailingCommit(InMemoryUnitOfWork):
    """The commit fails, and so does the one autocommitted write of a new chat."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.chats = FailingNewChat(self._transaction)

    async def commit(self) -> None:
        raise ServiceUnavailable("The database is unavailable.")


class Sessions(InMemoryChatSessionStore):
    saved: list[str]

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.saved = []

    def stored(self) -> list[str]:
        return [s for s in self.saved if s in self._sessions]

    async def save(self, session: ChatSession, now: datetime) -> None:
        self.saved.append(session.id)
        await super().save(session, now)


def hello(world: World) -> StartChat:
    return StartChat(
        user_id=world.user.id, model="dev/echo", message="hello", project_id=world.project.id
    )


def handler(uow: InMemoryUnitOfWork, sessions: Sessions, clock: ManualClock) -> StartChatHandler:
    return StartChatHandler(
        uow, sessions, CATALOG, frozenset({"dev"}), clock=clock, ids=SequentialIds()
    )


@pytest.mark.parametrize("existing_chat", [False, True], ids=["new chat", "existing chat"])
async def test_a_start_whose_write_fails_leaves_no_session_and_no_message(
    existing_chat: bool,
) -> None:
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))
    sessions = Sessions(clock)
    messages_before = dict(store.tables["messages"])
    chats_before = dict(store.tables["chats"])

    with pytest.raises(ServiceUnavailable):
        await handler(FailingCommit(store), sessions, clock).execute(
            StartChat(
                user_id=world.user.id,
                model="dev/echo",
                message="hello",
                project_id=None if existing_chat else world.project.id,
                chat_id=world.chat.id if existing_chat else None,
            )
        )

    assert len(sessions.saved) == 1  # it was stored while writing...
    assert sessions.stored() == []  # ...and deleted again when the write failed
    assert store.tables["messages"] == messages_before
    assert store.tables["chats"] == chats_before


async def test_a_started_chat_has_its_session_stored_and_its_messages_saved() -> None:
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))
    sessions = Sessions(clock)

    started = await handler(InMemoryUnitOfWork(store), sessions, clock).execute(
        StartChat(
            user_id=world.user.id, model="dev/echo", message="hello", project_id=world.project.id
        )
    )

    assert sessions.stored() == [started.session.id]
    assert await sessions.get(started.session.id) == started.session
    assert started.message_id in store.tables["messages"]
    assert started.prepared.reply.id in store.tables["messages"]
    # the session names its reply: a reader of the chat finds it from there
    reply_id = started.prepared.reply.id
    assert await sessions.live_session_ids([reply_id]) == {reply_id: started.session.id}


async def test_the_reply_is_launched_before_the_writes_and_told_when_they_are_saved() -> None:
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))
    launched: list[tuple[ChatSession, PreparedReply, asyncio.Future[None], int]] = []

    def launch(session: ChatSession, prepared: PreparedReply, saved: asyncio.Future[None]) -> None:
        launched.append((session, prepared, saved, len(store.tables["messages"])))

    started = await handler(InMemoryUnitOfWork(store), Sessions(clock), clock).execute(
        hello(world), launch
    )

    [(session, prepared, saved, messages_then)] = launched
    assert messages_then == 0  # nothing was written yet when the generation started
    assert (session, prepared) == (started.session, started.prepared)
    assert saved.done()
    assert saved.result() is None


async def test_a_failed_start_cancels_the_reply_it_launched() -> None:
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))
    launched: list[asyncio.Future[None]] = []

    def launch(session: ChatSession, prepared: PreparedReply, saved: asyncio.Future[None]) -> None:
        launched.append(saved)

    with pytest.raises(ServiceUnavailable):
        await handler(FailingCommit(store), Sessions(clock), clock).execute(hello(world), launch)

    [saved] = launched
    assert saved.cancelled()


async def test_a_new_chat_in_a_missing_personal_project_is_not_found_and_saves_nothing() -> None:
    """The personal project is not read first (its user always owns it); were it missing, the
    chat's insert refuses it and nothing is left behind."""
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))  # no personal project in it
    sessions = Sessions(clock)
    messages_before = dict(store.tables["messages"])

    with pytest.raises(ProjectNotFound):
        await handler(InMemoryUnitOfWork(store), sessions, clock).execute(
            StartChat(user_id=world.user.id, model="dev/echo", message="hello")
        )

    assert sessions.stored() == []
    assert store.tables["messages"] == messages_before


async def test_the_session_write_is_queued_before_the_generations_first_step() -> None:
    """Building the provider request is the generation's first step; the session's write,
    which the answer waits for, must not wait behind it."""
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))
    order: list[str] = []

    class Recording(Sessions):
        async def save(self, session: ChatSession, now: datetime) -> None:
            order.append("session")
            await super().save(session, now)

    async def generate() -> None:
        order.append("generation")

    tasks: list[asyncio.Task[None]] = []

    def launch(session: ChatSession, prepared: PreparedReply, saved: asyncio.Future[None]) -> None:
        tasks.append(asyncio.get_running_loop().create_task(generate()))

    await handler(InMemoryUnitOfWork(store), Recording(clock), clock).execute(hello(world), launch)
    await asyncio.gather(*tasks)

    assert order == ["session", "generation"]


async def test_a_launch_that_fails_leaves_no_session_and_no_message() -> None:
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))
    sessions = Sessions(clock)
    messages_before = dict(store.tables["messages"])

    def launch(session: ChatSession, prepared: PreparedReply, saved: asyncio.Future[None]) -> None:
        raise RuntimeError("no task could be created")

    with pytest.raises(RuntimeError):
        await handler(InMemoryUnitOfWork(store), sessions, clock).execute(hello(world), launch)

    assert len(sessions.saved) == 1  # its write was already queued...
    assert sessions.stored() == []  # ...and it was deleted again
    assert store.tables["messages"] == messages_before


async def test_a_new_chats_system_prompt_is_saved_and_opens_its_prompt() -> None:
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))
    start = handler(InMemoryUnitOfWork(store), Sessions(clock), clock)

    started = await start.execute(
        msgspec.structs.replace(hello(world), system_prompt="  Answer in French.  ")
    )

    assert store.tables["chats"][started.chat_id].system_prompt == "Answer in French."
    assert [(m.role, m.content) for m in started.prepared.prompt] == [
        (MessageRole.SYSTEM, "Answer in French."), (MessageRole.USER, "hello"),
    ]  # fmt: skip
    again = await start.execute(StartChat(
        user_id=world.user.id, model="dev/echo", message="more", chat_id=started.chat_id
    ))  # fmt: skip
    assert again.prepared.prompt[0] == PromptMessage(
        role=MessageRole.SYSTEM, content="Answer in French."
    )
    assert again.prepared.prompt[-1].content == "more"


@pytest.mark.parametrize(
    ("prompt", "into_existing", "match"),
    [("x" * 20_001, False, "at most 20000 characters"), ("Hi", True, "PATCH /api/chats")],
)
async def test_a_system_prompt_too_long_or_given_to_an_existing_chat_saves_nothing(
    prompt: str, into_existing: bool, match: str
) -> None:
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))
    sessions = Sessions(clock)
    messages_before, chats_before = dict(store.tables["messages"]), dict(store.tables["chats"])
    command = msgspec.structs.replace(
        hello(world), system_prompt=prompt,
        chat_id=world.chat.id if into_existing else None,
        project_id=None if into_existing else world.project.id,
    )  # fmt: skip

    with pytest.raises(InvalidInput, match=match) as info:
        await handler(InMemoryUnitOfWork(store), sessions, clock).execute(command)

    assert info.value.details["field"] == "systemPrompt"
    assert sessions.saved == []
    assert (store.tables["messages"], store.tables["chats"]) == (messages_before, chats_before)


class SlowLock(InMemoryUnitOfWork):
    """Taking the chat's lock waits ``wait`` seconds (another start holds it meanwhile)."""

    def __init__(self, store: MemoryStore, clock: ManualClock, wait: float) -> None:
        super().__init__(store)
        outer = self

        class Chats(InMemoryChatRepository):
            async def lock(self, chat_id: UUID) -> Chat:
                outer.clock.advance(outer.wait)
                return await super().lock(chat_id)

        self.clock, self.wait = clock, wait
        self.chats = Chats(self._transaction)


async def test_a_message_to_an_existing_chat_is_stamped_once_the_chat_is_locked() -> None:
    """Two starts in one chat: the one that waited for the lock is written after the other,
    so its messages must not be stamped (and sorted) before the other's."""
    store, clock = MemoryStore(), ManualClock()
    world = await committed_world(InMemoryUnitOfWork(store))
    read_at = clock.now()

    started = await handler(SlowLock(store, clock, wait=5), Sessions(clock), clock).execute(
        StartChat(user_id=world.user.id, model="dev/echo", message="hi", chat_id=world.chat.id)
    )

    locked_at = clock.now()
    assert locked_at > read_at
    message = store.tables["messages"][started.message_id]
    reply = store.tables["messages"][started.prepared.reply.id]
    assert (message.created_at, reply.created_at) == (locked_at, locked_at)
    assert started.session.created_at == locked_at
    assert store.tables["chats"][world.chat.id].updated_at == locked_at
