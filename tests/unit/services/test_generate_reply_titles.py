"""GenerateReply queues a new chat's automatic title once its first reply is done (in memory)."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.entities import World, committed_world
from tests.unit.services.test_title_chat import CATALOG
from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.chat_metrics import InMemoryChatMetrics
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.job_queue import InMemoryJobQueue
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chat_titles import TitlePolicy
from whalli.domain.model.chats import MessageStatus
from whalli.domain.model.errors import ProviderError, ServiceUnavailable
from whalli.domain.model.jobs import Job, TitleChat
from whalli.domain.model.replies import DoneEvent, ReplyEvent
from whalli.domain.services.chat.context import PreparedReply
from whalli.domain.services.chat.generate_reply import GenerateReplyHandler
from whalli.domain.services.chat.regenerate_reply import RegenerateReply, RegenerateReplyHandler
from whalli.domain.services.chat.start_chat import StartChat, StartChatHandler
from whalli.domain.services.chat.streaming import StopBoard

Launched = tuple[ChatSession, PreparedReply, asyncio.Future[None]]


class WatchingQueue(InMemoryJobQueue):
    """Records, with each job, the events its reply's stream had when the job was queued."""

    def __init__(self, stream: InMemoryReplyStream, session: list[str]) -> None:
        super().__init__()
        self.stream, self.session = stream, session
        self.seen: list[list[ReplyEvent]] = []

    async def enqueue(self, job: Job, *, delay_ms: int = 0) -> None:
        read = await self.stream.read(self.session[-1], None, block_ms=0)
        self.seen.append([event for _, event in read])
        await super().enqueue(job, delay_ms=delay_ms)


class DownQueue(InMemoryJobQueue):
    async def enqueue(self, job: Job, *, delay_ms: int = 0) -> None:
        raise ServiceUnavailable("The job queue is unavailable.")


class Setup:
    def __init__(self, *, model: ScriptedChatModel | None = None) -> None:
        self.store, self.clock = MemoryStore(), ManualClock()
        self.stream = InMemoryReplyStream(self.clock)
        self.sessions: list[str] = []
        self.queue: InMemoryJobQueue = WatchingQueue(self.stream, self.sessions)
        self.model = model or ScriptedChatModel(("Hello", " there"), provider="openai")
        self.echo = ScriptedChatModel(("hi",), provider="dev")
        self.ids, self.reply_ids = SequentialIds(), SequentialIds(start=900_000)

    def generator(self, titles: TitlePolicy | None = None) -> GenerateReplyHandler:
        return GenerateReplyHandler(
            InMemoryUnitOfWork(self.store), self.stream, InMemoryCache(self.clock), CATALOG,
            {"openai": self.model, "dev": self.echo}, clock=self.clock,
            ids=self.reply_ids, metrics=InMemoryChatMetrics(),
            stops=StopBoard(self.stream), jobs=self.queue, titles=titles,
        )  # fmt: skip

    async def world(self) -> World:
        return await committed_world(InMemoryUnitOfWork(self.store))

    async def reply(
        self, world: World, model: str = "openai/gpt-4o", *, chat_id: object = None, **kw: object
    ) -> Launched:
        """Start a chat (or, with ``chat_id``, a message in it) and generate its reply."""
        launched: list[Launched] = []
        starter = StartChatHandler(
            InMemoryUnitOfWork(self.store), InMemoryChatSessionStore(self.clock), CATALOG,
            frozenset({"openai", "dev"}), clock=self.clock, ids=self.ids,
        )  # fmt: skip
        command = StartChat(
            user_id=world.user.id, model=model, message="How do I bake bread?",
            project_id=None if chat_id else world.project.id, chat_id=chat_id,  # type: ignore[arg-type]
            use_cache=False,
        )  # fmt: skip
        await starter.execute(command, lambda *launch: launched.append(launch))
        [(session, prepared, saved)] = launched
        self.sessions.append(session.id)
        await self.generator(**kw).execute(session, prepared, saved)  # type: ignore[arg-type]
        return session, prepared, saved


async def test_a_new_chats_first_reply_queues_its_title_after_the_done_event() -> None:
    setup = Setup()
    world = await setup.world()

    session, prepared, _ = await setup.reply(world)

    assert prepared.first_of_new_chat
    expected = TitleChat(chat_id=session.chat_id, expected_title="How do I bake bread?")
    assert setup.queue.jobs == [expected]  # the title the start gave the chat
    assert isinstance(setup.queue, WatchingQueue)
    [seen] = setup.queue.seen
    assert isinstance(seen[-1], DoneEvent)  # readers had their done before the enqueue


async def test_a_later_message_and_a_regeneration_queue_no_title() -> None:
    setup = Setup()
    world = await setup.world()
    session, _, _ = await setup.reply(world)
    setup.queue = WatchingQueue(setup.stream, setup.sessions)

    _, later, _ = await setup.reply(world, chat_id=session.chat_id)
    launched: list[Launched] = []
    regenerator = RegenerateReplyHandler(
        InMemoryUnitOfWork(setup.store), InMemoryChatSessionStore(setup.clock), CATALOG,
        frozenset({"openai", "dev"}), clock=setup.clock, ids=setup.ids,
    )  # fmt: skip
    await regenerator.execute(
        RegenerateReply(user_id=world.user.id, chat_id=session.chat_id),
        lambda *launch: launched.append(launch),
    )
    [(regenerated, prepared, saved)] = launched
    setup.sessions.append(regenerated.id)
    await setup.generator().execute(regenerated, prepared, saved)

    assert not later.first_of_new_chat
    assert not prepared.first_of_new_chat
    assert setup.queue.jobs == []


@pytest.mark.parametrize(
    ("model", "titles"),
    [("dev/echo", None), ("openai/gpt-4o", TitlePolicy(model="off"))],
    ids=["dev/echo", "titles off"],
)
async def test_dev_echo_and_titles_off_queue_nothing(
    model: str, titles: TitlePolicy | None
) -> None:
    setup = Setup()
    world = await setup.world()

    await setup.reply(world, model, titles=titles)

    assert setup.queue.jobs == []


async def test_a_failed_first_reply_queues_no_title() -> None:
    setup = Setup(model=ScriptedChatModel((), provider="openai", error=ProviderError("Bad.")))
    world = await setup.world()

    _, prepared, _ = await setup.reply(world)

    stored = setup.store.tables["messages"][prepared.reply.id]
    assert stored.status is MessageStatus.FAILED
    assert setup.queue.jobs == []


async def test_a_queue_that_fails_leaves_the_reply_done_and_the_title_as_it_is() -> None:
    setup = Setup()
    setup.queue = DownQueue()
    world = await setup.world()

    session, prepared, _ = await setup.reply(world)

    events = [e for _, e in await setup.stream.read(session.id, None, block_ms=0)]
    assert isinstance(events[-1], DoneEvent)
    assert setup.store.tables["messages"][prepared.reply.id].status is MessageStatus.COMPLETE
    assert setup.store.tables["chats"][session.chat_id].title == "How do I bake bread?"
