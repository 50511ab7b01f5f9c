"""GenerateReply when the stores around it fail: the reply still ends for its readers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Self
from uuid import UUID

import msgspec
import pytest

from tests.integration.entities import World, committed_world
from tests.unit.services.test_start_chat_attachments import CATALOG
from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.chat_metrics import InMemoryChatMetrics
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.chats import InMemoryChatRepository
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import (
    GenerationParams,
    Message,
    MessageRole,
    MessageStatus,
    PromptMessage,
)
from whalli.domain.model.errors import ProviderError, ServiceUnavailable
from whalli.domain.model.images import ImagePart
from whalli.domain.model.replies import (
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    ReplyEvent,
    TokenEvent,
)
from whalli.domain.model.users import Plan
from whalli.domain.services.chat.context import (
    ContextLimits,
    PreparedReply,
    estimate_prompt_tokens,
)
from whalli.domain.services.chat.generate_reply import GenerateReplyHandler, ReplySettings
from whalli.domain.services.chat.prompt_source import PromptSource
from whalli.domain.services.chat.start_chat import StartChat, StartChatHandler
from whalli.domain.services.chat.streaming import StopBoard
from whalli.ports.chat_model import ChatModel, StreamDelta, StreamEnd, StreamEvent
from whalli.ports.usage import UsageRecord

DOWN = ServiceUnavailable("The store is unavailable.")


class DownCache(InMemoryCache):
    """A cache that does not answer, on reads or on writes (``fail_get``, ``fail_set``)."""

    def __init__(self, clock: ManualClock, *, fail_get: bool, fail_set: bool) -> None:
        super().__init__(clock)
        self.fail_get, self.fail_set = fail_get, fail_set

    async def get(self, key: str) -> bytes | None:
        if self.fail_get:
            raise DOWN
        return await super().get(key)

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        if self.fail_set:
            raise DOWN
        await super().set(key, value, ttl_seconds)


class LostAnswers(InMemoryChatRepository):
    """``finish_reply`` is written, then its answer is lost ``lost`` times (a connection that
    dies after the commit); ``refused`` times before that it is not written at all."""

    refused = 0
    lost = 0

    async def finish_reply(self, message: Message, usage: UsageRecord) -> None:
        if LostAnswers.refused:
            LostAnswers.refused -= 1
            raise DOWN
        await super().finish_reply(message, usage)
        if LostAnswers.lost:
            LostAnswers.lost -= 1
            raise DOWN


class FlakyUnitOfWork(InMemoryUnitOfWork):
    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.chats = LostAnswers(self._transaction)
        self.autocommits = 0

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Self]:
        self.autocommits += 1
        async with super().autocommit() as uow:
            yield uow


class Setup:
    def __init__(
        self, *, cache: InMemoryCache | None = None, model: ChatModel | None = None
    ) -> None:
        self.store, self.clock = MemoryStore(), ManualClock()
        self.ids = SequentialIds(start=100_000)  # (apart from the ids of start())
        self.stream = InMemoryReplyStream(self.clock)
        self.cache = cache or InMemoryCache(self.clock)
        self.uow = FlakyUnitOfWork(self.store)
        self.model = model or ScriptedChatModel(("Hello", " there"), provider="dev")
        self.metrics = InMemoryChatMetrics()
        LostAnswers.refused = LostAnswers.lost = 0

    def handler(
        self,
        attempts: int = 4,
        progress_every_s: float | None = None,
        *,
        cache_shared: bool = False,
    ) -> GenerateReplyHandler:
        settings = ReplySettings(
            persist_attempts=attempts, persist_backoff_s=0, progress_every_s=progress_every_s,
            cache_shared=cache_shared,
        )  # fmt: skip
        return GenerateReplyHandler(
            self.uow, self.stream, self.cache, CATALOG, {"dev": self.model},
            clock=self.clock, ids=self.ids, metrics=self.metrics,
            stops=StopBoard(self.stream), settings=settings,
        )  # fmt: skip

    async def start(self) -> tuple[World, ChatSession, PreparedReply, asyncio.Future[None]]:
        world = await committed_world(InMemoryUnitOfWork(self.store))
        launched: list[tuple[ChatSession, PreparedReply, asyncio.Future[None]]] = []
        starter = StartChatHandler(
            InMemoryUnitOfWork(self.store), InMemoryChatSessionStore(self.clock), CATALOG,
            frozenset({"dev"}), clock=self.clock, ids=SequentialIds(),
        )  # fmt: skip
        command = StartChat(
            user_id=world.user.id, model="dev/echo", message="hi", project_id=world.project.id
        )
        await starter.execute(command, lambda *launch: launched.append(launch))
        [(session, prepared, saved)] = launched
        return world, session, prepared, saved

    async def events(self, session_id: str) -> list[ReplyEvent]:
        return [e for _, e in await self.stream.read(session_id, None, block_ms=0)]

    def reply(self, message_id: UUID) -> Message:
        message: Message = self.store.tables["messages"][message_id]
        return message

    def usage(self) -> list[UsageRecord]:
        return list(self.store.tables["usage_records"].values())


@pytest.mark.parametrize(
    ("fail_get", "fail_set"), [(True, False), (False, True), (True, True)],
    ids=["get fails", "set fails", "both fail"],
)  # fmt: skip
async def test_a_cache_that_does_not_answer_never_fails_the_reply(
    fail_get: bool, fail_set: bool
) -> None:
    clock = ManualClock()
    setup = Setup(cache=DownCache(clock, fail_get=fail_get, fail_set=fail_set))
    _, session, prepared, saved = await setup.start()

    message_id = await setup.handler().execute(session, prepared, saved)

    events = await setup.events(session.id)
    assert [e.delta for e in events if isinstance(e, TokenEvent)] == ["Hello", " there"]
    assert isinstance(events[-1], DoneEvent)
    assert setup.reply(message_id).status is MessageStatus.COMPLETE
    assert setup.reply(message_id).content == "Hello there"


@pytest.mark.parametrize(("refused", "lost"), [(2, 0), (0, 1), (1, 2)])
async def test_the_final_write_is_tried_again_and_counts_its_usage_once(
    refused: int, lost: int
) -> None:
    setup = Setup()
    _, session, prepared, saved = await setup.start()
    LostAnswers.refused, LostAnswers.lost = refused, lost

    message_id = await setup.handler().execute(session, prepared, saved)

    assert setup.uow.autocommits == 1 + refused + lost
    assert setup.reply(message_id).status is MessageStatus.COMPLETE
    assert [u.message_id for u in setup.usage()] == [message_id]
    assert isinstance((await setup.events(session.id))[-1], DoneEvent)


async def test_a_reply_that_cannot_be_saved_ends_its_stream_with_an_error() -> None:
    setup = Setup()
    _, session, prepared, saved = await setup.start()
    LostAnswers.refused = 3

    with pytest.raises(ServiceUnavailable):
        await setup.handler(attempts=3).execute(session, prepared, saved)

    events = await setup.events(session.id)
    assert [e.delta for e in events if isinstance(e, TokenEvent)] == ["Hello", " there"]
    final = events[-1]
    assert isinstance(final, ErrorEvent)
    assert final.code == "reply_not_saved"
    assert setup.uow.autocommits == 3
    assert setup.reply(prepared.reply.id).status is MessageStatus.PENDING
    assert setup.usage() == []


async def test_a_reply_whose_chat_was_deleted_records_its_usage_and_says_so() -> None:
    setup = Setup()
    world, session, prepared, saved = await setup.start()
    async with InMemoryUnitOfWork(setup.store) as uow:
        await uow.chats.delete(session.chat_id)
        await uow.commit()

    await setup.handler().execute(session, prepared, saved)

    final = (await setup.events(session.id))[-1]
    assert isinstance(final, ErrorEvent)
    assert final.code == "chat_deleted"
    [record] = setup.usage()
    assert (record.message_id, record.user_id) == (None, world.user.id)
    assert record.completion_tokens > 0
    # counted as what it is: not a complete reply (nothing was saved)
    assert [r["status"] for r in setup.metrics.replies] == ["chat_deleted"]


class Broken(ScriptedChatModel):
    """A model adapter with a bug: it raises something that is not a ``ProviderError``."""

    async def _events(self) -> AsyncIterator[StreamEvent]:
        raise KeyError("choices")
        yield StreamDelta(text="never")


async def test_an_unexpected_failure_still_ends_the_stream() -> None:
    setup = Setup(model=Broken(provider="dev"))
    _, session, prepared, saved = await setup.start()

    with pytest.raises(KeyError):
        await setup.handler().execute(session, prepared, saved)

    final = (await setup.events(session.id))[-1]
    assert isinstance(final, ErrorEvent)
    assert final.code == "internal_error"
    assert "choices" not in final.message  # no internals in what users see
    reply = setup.reply(prepared.reply.id)  # failed now, not pending until the sweeper
    assert (reply.status, reply.finish_reason, reply.error) == (
        MessageStatus.FAILED, "error", final.message,
    )  # fmt: skip
    assert setup.usage() == []  # nothing is known of its tokens


async def test_an_unexpected_failure_before_the_start_committed_fails_nothing() -> None:
    setup = Setup(model=Broken(provider="dev"))
    _, session, prepared, _ = await setup.start()
    not_saved: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    not_saved.cancel()  # the start failed: its pending reply was never written

    with pytest.raises(KeyError):
        await setup.handler().execute(session, prepared, not_saved)

    assert setup.reply(prepared.reply.id).status is MessageStatus.PENDING  # (this test's store)


class Gated(ScriptedChatModel):
    """Streams its first delta, then waits for ``go`` before the rest."""

    def __init__(self) -> None:
        super().__init__(("Hello", " there"), provider="dev")
        self.go = asyncio.Event()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        yield StreamDelta(text="Hello")
        await self.go.wait()
        yield StreamDelta(text=" there")
        yield StreamEnd(finish_reason="stop", usage=self.usage)


class ProgressSeen(InMemoryChatRepository):
    seen: asyncio.Event

    async def save_progress(
        self, message_id: UUID, content: str, now: datetime, reasoning: str = ""
    ) -> bool:
        saved = await super().save_progress(message_id, content, now, reasoning)
        ProgressSeen.seen.set()
        return saved


async def test_a_replys_text_so_far_is_stored_while_it_is_generated() -> None:
    model = Gated()
    setup = Setup(model=model)
    setup.uow.chats = ProgressSeen(setup.uow._transaction)
    ProgressSeen.seen = asyncio.Event()
    _, session, prepared, saved = await setup.start()
    handler = setup.handler(progress_every_s=0)

    generating = asyncio.create_task(handler.execute(session, prepared, saved))
    await asyncio.wait_for(ProgressSeen.seen.wait(), timeout=10)
    midway = setup.reply(prepared.reply.id)
    model.go.set()
    message_id = await generating

    assert (midway.status, midway.content) == (MessageStatus.STREAMING, "Hello")
    final = setup.reply(message_id)
    assert (final.status, final.content) == (MessageStatus.COMPLETE, "Hello there")


async def test_no_progress_is_stored_when_it_is_off() -> None:
    model = Gated()
    setup = Setup(model=model)
    setup.uow.chats = ProgressSeen(setup.uow._transaction)
    ProgressSeen.seen = asyncio.Event()
    _, session, prepared, saved = await setup.start()
    handler = setup.handler(progress_every_s=None)

    generating = asyncio.create_task(handler.execute(session, prepared, saved))
    while not await setup.events(session.id):  # the first token is out: the model waits
        await asyncio.sleep(0)
    model.go.set()
    await generating

    assert not ProgressSeen.seen.is_set()


class SlowProgress(InMemoryChatRepository):
    """A checkpoint that takes until ``release`` is set; records the order of the writes."""

    release: asyncio.Event
    started: asyncio.Event
    writes: list[str]

    async def save_progress(
        self, message_id: UUID, content: str, now: datetime, reasoning: str = ""
    ) -> bool:
        SlowProgress.started.set()
        await SlowProgress.release.wait()
        SlowProgress.writes.append("progress")
        return await super().save_progress(message_id, content, now, reasoning)

    async def finish_reply(self, message: Message, usage: UsageRecord) -> None:
        SlowProgress.writes.append("final")
        await super().finish_reply(message, usage)


async def test_the_final_write_waits_for_a_checkpoint_in_flight() -> None:
    model = Gated()
    setup = Setup(model=model)
    setup.uow.chats = SlowProgress(setup.uow._transaction)
    SlowProgress.release, SlowProgress.started = asyncio.Event(), asyncio.Event()
    SlowProgress.writes = []
    _, session, prepared, saved = await setup.start()
    handler = setup.handler(progress_every_s=0)

    generating = asyncio.create_task(handler.execute(session, prepared, saved))
    await asyncio.wait_for(SlowProgress.started.wait(), timeout=10)
    model.go.set()  # the reply is complete while its checkpoint is still being written
    for _ in range(100):  # let the generation run as far as it can without the checkpoint
        await asyncio.sleep(0)
    assert SlowProgress.writes == []
    SlowProgress.release.set()
    message_id = await generating

    assert SlowProgress.writes == ["progress", "final"]
    final = setup.reply(message_id)
    assert (final.status, final.content) == (MessageStatus.COMPLETE, "Hello there")


@pytest.mark.parametrize("deltas", [(), ("Hel",)], ids=["before any token", "after one"])
async def test_a_provider_failure_charges_only_what_was_served(deltas: tuple[str, ...]) -> None:
    failing = ScriptedChatModel(deltas, provider="dev", error=ProviderError("upstream down"))
    setup = Setup(model=failing)
    _, session, prepared, saved = await setup.start()

    await setup.handler().execute(session, prepared, saved)

    reply = setup.reply(prepared.reply.id)
    [record] = setup.usage()
    assert (reply.status, reply.content) == (MessageStatus.FAILED, "".join(deltas))
    if deltas:  # a partial reply: its tokens are estimated (the provider reported none)
        assert record.prompt_tokens > 0
        assert record.completion_tokens > 0
    else:  # nothing was served: nothing is charged
        assert (record.prompt_tokens, record.completion_tokens) == (0, 0)
        assert record.cost_usd == 0
        assert reply.usage.total == 0


async def _reply_in(setup: Setup, world: World, *, shared: bool) -> DoneEvent:
    """Start "hi" in ``world``'s project and generate the reply; its final event."""
    launched: list[tuple[ChatSession, PreparedReply, asyncio.Future[None]]] = []
    starter = StartChatHandler(
        InMemoryUnitOfWork(setup.store), InMemoryChatSessionStore(setup.clock), CATALOG,
        frozenset({"dev"}), clock=setup.clock, ids=setup.ids,
    )  # fmt: skip
    command = StartChat(
        user_id=world.user.id, model="dev/echo", message="hi", project_id=world.project.id
    )
    await starter.execute(command, lambda *launch: launched.append(launch))
    [(session, prepared, saved)] = launched
    await setup.handler(cache_shared=shared).execute(session, prepared, saved)
    final = (await setup.events(session.id))[-1]
    assert isinstance(final, DoneEvent)
    return final


@pytest.mark.parametrize("shared", [False, True], ids=["per project", "shared"])
async def test_the_cache_answers_within_a_project_unless_shared(shared: bool) -> None:
    setup = Setup()
    mine = await committed_world(InMemoryUnitOfWork(setup.store))
    theirs = await committed_world(InMemoryUnitOfWork(setup.store))

    first = await _reply_in(setup, mine, shared=shared)
    elsewhere = await _reply_in(setup, theirs, shared=shared)
    here = await _reply_in(setup, mine, shared=shared)

    assert (first.cached, elsewhere.cached, here.cached) == (False, shared, True)


def _spec(model_id: str, *, vision: bool, fallback: str | None = None) -> ModelSpec:
    provider = model_id.split("/")[0]
    return ModelSpec(
        id=model_id, provider=provider, upstream=model_id, min_plan=Plan.FREE,
        input_usd_per_mtok=0.0, output_usd_per_mtok=0.0, context_window=8000, vision=vision,
        fallback=fallback,
    )  # fmt: skip


async def test_a_prompt_with_images_falls_back_only_to_models_that_read_images() -> None:
    catalog = ModelCatalog(
        [
            _spec("anthropic/seeing", vision=True, fallback="xai/blind"),
            _spec("xai/blind", vision=False, fallback="openai/seeing"),
            _spec("openai/seeing", vision=True),
        ]
    )
    down = ProviderError("overloaded", kind="server_error")
    failing = ScriptedChatModel((), provider="anthropic", error=down)
    blind, seeing = ScriptedChatModel(provider="xai"), ScriptedChatModel(provider="openai")
    setup = Setup()
    _world, session, prepared, saved = await setup.start()
    session = msgspec.structs.replace(session, model="anthropic/seeing")
    image = ImagePart(url="data:image/png;base64,iVBORw0K")
    question = PromptMessage(role=MessageRole.USER, content="q", parts=(image, "q"))
    handler = GenerateReplyHandler(
        setup.uow, setup.stream, setup.cache, catalog,
        {"anthropic": failing, "xai": blind, "openai": seeing},
        clock=setup.clock, ids=setup.ids, metrics=InMemoryChatMetrics(),
        stops=StopBoard(setup.stream), settings=ReplySettings(persist_backoff_s=0),
    )  # fmt: skip

    await handler.execute(session, replace(prepared, prompt=(question,), source=None), saved)

    assert blind.requests == []  # skipped: it cannot read the image
    assert [r.messages for r in seeing.requests] == [(question,)]
    reply = setup.reply(prepared.reply.id)
    assert (reply.status, reply.model) == (MessageStatus.COMPLETE, "openai/seeing")


def _window(model_id: str, window: int, fallback: str | None = None) -> ModelSpec:
    return msgspec.structs.replace(
        _spec(model_id, vision=False, fallback=fallback), context_window=window
    )


async def test_a_fallback_gets_the_prompt_built_for_its_window_or_is_skipped_if_too_small() -> None:
    big, tiny, small = (
        _window("openai/big", 8000, fallback="xai/tiny"),
        _window("xai/tiny", 100, fallback="anthropic/small"),
        _window("anthropic/small", 2000),
    )
    down = ProviderError("overloaded", kind="server_error")
    failing = ScriptedChatModel((), provider="openai", error=down)
    tiny_model, small_model = (
        ScriptedChatModel(provider="xai"),
        ScriptedChatModel(provider="anthropic"),
    )
    setup = Setup()
    _world, session, prepared, saved = await setup.start()
    session = msgspec.structs.replace(
        session, model=big.id, params=GenerationParams(max_tokens=3000)
    )
    earlier = [
        Message.from_user(
            id=UUID(int=i + 1),
            chat_id=session.chat_id,
            content=f"{i} " + "x" * 400,
            now=setup.clock.now(),
        )
        for i in range(30)
    ]
    source = PromptSource(ContextLimits(reserve_for_reply=500), earlier, "q" * 600, [], None, {})
    prompt = source.build(big, reply_tokens=3000, effort=None)
    handler = GenerateReplyHandler(
        setup.uow, setup.stream, setup.cache, ModelCatalog([big, tiny, small]),
        {"openai": failing, "xai": tiny_model, "anthropic": small_model},
        clock=setup.clock, ids=setup.ids, metrics=InMemoryChatMetrics(),
        stops=StopBoard(setup.stream), settings=ReplySettings(persist_backoff_s=0),
    )  # fmt: skip

    await handler.execute(session, replace(prepared, prompt=prompt, source=source), saved)

    assert [r.messages for r in failing.requests] == [prompt]  # as prepared: all of it
    assert estimate_prompt_tokens(prompt) > 2000
    assert tiny_model.requests == []  # skipped: the new message alone is past its window
    [sent] = small_model.requests
    assert sent.messages[-1].content == "q" * 600
    assert sent.params.max_tokens is not None
    assert estimate_prompt_tokens(sent.messages) + sent.params.max_tokens <= 2000
    assert sent.params.max_tokens == 2000 - (150 + 4)  # cut to what the new message leaves
    reply = setup.reply(prepared.reply.id)
    assert (reply.status, reply.model, reply.params) == (
        MessageStatus.COMPLETE, small.id, sent.params,
    )  # fmt: skip


async def test_a_models_reasoning_streams_before_its_text_and_is_saved_and_cached() -> None:
    thinking = ScriptedChatModel(("Hi", "!"), provider="dev", reasoning=("Hmm.", " A greeting."))
    setup = Setup(model=thinking)
    world = await committed_world(InMemoryUnitOfWork(setup.store))

    async def reply() -> tuple[list[ReplyEvent], Message, PreparedReply]:
        launched: list[tuple[ChatSession, PreparedReply, asyncio.Future[None]]] = []
        starter = StartChatHandler(
            InMemoryUnitOfWork(setup.store), InMemoryChatSessionStore(setup.clock), CATALOG,
            frozenset({"dev"}), clock=setup.clock, ids=setup.ids,
        )  # fmt: skip
        command = StartChat(
            user_id=world.user.id, model="dev/echo", message="hi", project_id=world.project.id
        )
        await starter.execute(command, lambda *launch: launched.append(launch))
        [(session, prepared, saved)] = launched
        await setup.handler().execute(session, prepared, saved)
        return await setup.events(session.id), setup.reply(prepared.reply.id), prepared

    events, first, prepared = await reply()
    assert events[:4] == [
        ReasoningEvent(delta="Hmm."), ReasoningEvent(delta=" A greeting."),
        TokenEvent(delta="Hi"), TokenEvent(delta="!"),
    ]  # fmt: skip
    assert isinstance(events[-1], DoneEvent)
    assert (first.content, first.reasoning) == ("Hi!", "Hmm. A greeting.")
    assert prepared.prompt == (PromptMessage(role=MessageRole.USER, content="hi"),)

    # the same prompt again: a cache hit replays the reasoning, then the text
    replayed, second, _ = await reply()
    assert replayed[:4] == events[:4]
    assert isinstance(replayed[-1], DoneEvent)
    assert replayed[-1].cached
    assert second.reasoning == "Hmm. A greeting."
    assert len(thinking.requests) == 1


@pytest.mark.parametrize(
    ("deltas", "finish_reason"),
    [((), "stop"), (("", ""), "tool_calls"), (("Hi",), "unknown")],
    ids=["no text", "empty pieces", "unknown finish"],
)
async def test_a_reply_without_text_or_with_an_unknown_end_is_saved_but_never_cached(
    deltas: tuple[str, ...], finish_reason: str
) -> None:
    model = ScriptedChatModel(deltas, provider="dev", finish_reason=finish_reason)
    setup = Setup(model=model)
    world = await committed_world(InMemoryUnitOfWork(setup.store))

    first = await _reply_in(setup, world, shared=False)
    again = await _reply_in(setup, world, shared=False)

    assert (first.status, first.finish_reason) == ("complete", finish_reason)
    assert (first.cached, again.cached) == (False, False)
    assert len(model.requests) == 2  # the same question asked again
