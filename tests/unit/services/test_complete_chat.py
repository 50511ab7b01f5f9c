"""The stateless completion behind the OpenAI-compatible API: plans, cache, fallbacks, usage."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.chat_metrics import InMemoryChatMetrics
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.memory.usage import InMemoryUsageRepository
from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.chats import GenerationParams, MessageRole, PromptMessage, TokenUsage
from whalli.domain.model.errors import (
    InvalidInput,
    ModelNotFound,
    ModelNotInPlan,
    ProviderError,
    ServiceUnavailable,
)
from whalli.domain.model.prompt_cache import cache_key, user_scope
from whalli.domain.model.users import Plan, User
from whalli.domain.services.chat.complete import CompleteChat, CompleteChatHandler
from whalli.domain.services.chat.requests import untrimmed_reply_cap
from whalli.ports.chat_model import ChatModel, StreamDelta, StreamEnd
from whalli.ports.usage import UsageRecord


def spec(id: str, *, plan: Plan = Plan.FREE, fallback: str | None = None) -> ModelSpec:
    provider = id.split("/")[0]
    return ModelSpec(
        id=id, provider=provider, upstream=id.split("/")[1], min_plan=plan,
        input_usd_per_mtok=1.0, output_usd_per_mtok=2.0, context_window=8000, fallback=fallback,
    )  # fmt: skip


CATALOG = ModelCatalog(
    [
        spec("openai/mini"),
        spec("openai/big", plan=Plan.PRO, fallback="openai/mini"),
        spec("anthropic/haiku", fallback="openai/mini"),
        spec("xai/grok"),
    ]
)
QUESTION = (PromptMessage(role=MessageRole.USER, content="Say hello"),)


class World:
    def __init__(self, models: dict[str, ChatModel], *, shared: bool = False) -> None:
        self.shared = shared
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.ids = SequentialIds()
        self.cache = InMemoryCache(self.clock)
        self.metrics = InMemoryChatMetrics()
        self.models = models
        self.enabled = {"openai", "anthropic"}

    def handler(self) -> CompleteChatHandler:
        return CompleteChatHandler(
            InMemoryUnitOfWork(self.store), self.cache, CATALOG, self.models, self.enabled,
            clock=self.clock, ids=self.ids, metrics=self.metrics, cache_ttl=timedelta(minutes=5),
            cache_shared=self.shared,
        )  # fmt: skip

    async def user(self, plan: Plan = Plan.FREE) -> User:
        user = User.create(
            id=self.ids.new_id(), email=f"{plan}@example.com", now=self.clock.now(), plan=plan
        )
        async with InMemoryUnitOfWork(self.store) as uow:
            await uow.users.add(user)
            await uow.commit()
        return user

    async def usage(self) -> list[UsageRecord]:
        records: list[UsageRecord] = list(self.store.tables["usage_records"].values())
        return sorted(records, key=lambda r: r.id)

    async def cached(self, model: str, user: User) -> bool:
        key = cache_key(
            model_id=model, messages=QUESTION, params=GenerationParams(), scope=user_scope(user.id)
        )
        return await self.cache.get(key) is not None


def openai_model() -> ScriptedChatModel:
    usage = TokenUsage(prompt_tokens=10, completion_tokens=2)
    return ScriptedChatModel(["Hello", ", world"], provider="openai", usage=usage)


async def complete(
    world: World,
    user: User,
    model: str,
    *,
    params: GenerationParams = GenerationParams(),
    use_cache: bool = True,
) -> list[object]:
    command = CompleteChat(
        user_id=user.id, model=model, messages=QUESTION, params=params, use_cache=use_cache
    )
    return [event async for event in world.handler().stream(command)]


async def test_a_complete_reply_streams_its_deltas_then_the_end_and_records_usage() -> None:
    world = World({"openai": openai_model()})
    user = await world.user()

    events = await complete(world, user, "openai/mini")

    assert events == [
        StreamDelta(text="Hello"),
        StreamDelta(text=", world"),
        StreamEnd(finish_reason="stop", usage=TokenUsage(prompt_tokens=10, completion_tokens=2)),
    ]
    [record] = await world.usage()
    assert (record.user_id, record.model, record.provider, record.cached) == (
        user.id, "openai/mini", "openai", False,
    )  # fmt: skip
    assert (record.prompt_tokens, record.completion_tokens, record.message_id) == (10, 2, None)
    assert record.cost_usd == pytest.approx((10 * 1.0 + 2 * 2.0) / 1_000_000)
    assert [r["status"] for r in world.metrics.replies] == ["complete"]
    assert world.metrics.cache["miss"] == 1


async def test_a_model_above_the_plan_is_refused_before_any_provider_is_called() -> None:
    model = openai_model()
    world = World({"openai": model})
    user = await world.user(Plan.FREE)

    with pytest.raises(ModelNotInPlan, match="does not include openai/big"):
        await complete(world, user, "openai/big")
    assert model.requests == []
    assert await world.usage() == []


async def test_the_plan_is_checked_on_the_user_authentication_just_read() -> None:
    model = openai_model()
    world = World({"openai": model})
    stored = await world.user(Plan.FREE)
    # what authentication read for this request: upgraded since (the store is not read again)
    upgraded = msgspec.structs.replace(stored, plan=Plan.PRO)
    command = CompleteChat(user_id=stored.id, user=upgraded, model="openai/big", messages=QUESTION)

    events = [event async for event in world.handler().stream(command)]

    assert isinstance(events[-1], StreamEnd)
    # a user given for someone else is ignored: the caller's own row decides
    other = msgspec.structs.replace(upgraded, id=world.ids.new_id())
    with pytest.raises(ModelNotInPlan):
        await anext(
            world.handler().stream(
                CompleteChat(user_id=stored.id, user=other, model="openai/big", messages=QUESTION)
            )
        )


async def test_a_model_whose_provider_is_not_enabled_is_not_found() -> None:
    world = World({"openai": openai_model()})
    user = await world.user()

    with pytest.raises(ModelNotFound, match="xai/grok"):
        await complete(world, user, "xai/grok")
    with pytest.raises(ModelNotFound, match="nope/none"):
        await complete(world, user, "nope/none")


async def test_a_conversation_without_messages_is_refused() -> None:
    world = World({"openai": openai_model()})
    user = await world.user()
    command = CompleteChat(user_id=user.id, model="openai/mini", messages=())

    with pytest.raises(InvalidInput, match="message"):
        [event async for event in world.handler().stream(command)]


async def test_an_identical_prompt_is_answered_from_the_cache_delta_by_delta() -> None:
    model = openai_model()
    world = World({"openai": model})
    user = await world.user()

    first = await complete(world, user, "openai/mini")
    second = await complete(world, user, "openai/mini")

    assert second == first
    assert await world.cached("openai/mini", user)  # (the helper names the entry it looks for)
    assert len(model.requests) == 1
    fresh, cached = await world.usage()
    assert (cached.cached, cached.cost_usd, cached.completion_tokens) == (True, 0.0, 2)
    assert fresh.cached is False
    assert world.metrics.cache == {"miss": 1, "hit": 1}


async def test_another_users_identical_prompt_is_not_answered_from_the_cache() -> None:
    model = openai_model()
    world, shared = World({"openai": model}), World({"openai": openai_model()}, shared=True)
    ada, bob = await world.user(), await world.user(Plan.PRO)

    await complete(world, ada, "openai/mini")
    await complete(world, bob, "openai/mini")
    shared_ada, shared_bob = await shared.user(), await shared.user(Plan.PRO)
    await complete(shared, shared_ada, "openai/mini")
    await complete(shared, shared_bob, "openai/mini")

    assert len(model.requests) == 2  # a hit would tell bob that someone asked this before
    assert [r.cached for r in await world.usage()] == [False, False]
    assert [r.cached for r in await shared.usage()] == [False, True]  # shared: one cache


async def test_other_parameters_or_no_cache_do_not_use_the_cached_reply() -> None:
    model = openai_model()
    world = World({"openai": model})
    user = await world.user()

    await complete(world, user, "openai/mini")
    await complete(world, user, "openai/mini", params=GenerationParams(temperature=0.2))
    await complete(world, user, "openai/mini", use_cache=False)

    assert len(model.requests) == 3
    assert [r.cached for r in await world.usage()] == [False, False, False]


async def test_a_provider_failing_before_the_first_delta_hands_over_to_the_fallback() -> None:
    broken = ScriptedChatModel([], provider="anthropic", error=ProviderError("overloaded"))
    world = World({"openai": openai_model(), "anthropic": broken})
    user = await world.user()

    handler = world.handler()
    command = CompleteChat(user_id=user.id, model="anthropic/haiku", messages=QUESTION)
    events = [event async for event in handler.stream(command)]

    assert [e.text for e in events if isinstance(e, StreamDelta)] == ["Hello", ", world"]
    assert handler.answered_by == "openai/mini"
    [record] = await world.usage()
    assert (record.model, record.provider) == ("openai/mini", "openai")
    assert world.metrics.errors == {("anthropic", "provider_error"): 1}
    assert broken.open_streams == 0


async def test_a_request_the_provider_refuses_as_invalid_gets_no_fallback() -> None:
    """Another model would answer, silently, a request the one asked for cannot take."""
    refusal = ProviderError("The anthropic provider rejected the request (HTTP 400).",
                            kind="invalid_request")  # fmt: skip
    broken = ScriptedChatModel([], provider="anthropic", error=refusal)
    fallback = openai_model()
    world = World({"openai": fallback, "anthropic": broken})
    user = await world.user()

    with pytest.raises(ProviderError, match="HTTP 400"):
        await complete(world, user, "anthropic/haiku")
    assert fallback.requests == []
    # counted as a failed reply, as a chat's is, with nothing to charge
    [record] = await world.usage()
    assert (record.model, record.prompt_tokens, record.completion_tokens, record.cost_usd) == (
        "anthropic/haiku", 0, 0, 0.0,
    )  # fmt: skip
    assert [r["status"] for r in world.metrics.replies] == ["failed"]


async def test_a_fallbacks_reply_is_not_cached_as_the_model_asked_for() -> None:
    broken = ScriptedChatModel([], provider="anthropic", error=ProviderError("overloaded"))
    world = World({"openai": openai_model(), "anthropic": broken})
    user = await world.user()

    await complete(world, user, "anthropic/haiku")

    assert not await world.cached("anthropic/haiku", user)


async def test_when_every_candidate_fails_the_provider_error_is_raised_and_nothing_cached() -> None:
    broken = ScriptedChatModel([], provider="openai", error=ProviderError("down"))
    world = World({"openai": broken})
    user = await world.user()

    with pytest.raises(ProviderError, match="down"):
        await complete(world, user, "openai/mini")
    # a failed reply, counted as a chat's is, that used nothing
    [record] = await world.usage()
    assert (record.model, record.prompt_tokens, record.completion_tokens, record.cost_usd) == (
        "openai/mini", 0, 0, 0.0,
    )  # fmt: skip
    assert [r["status"] for r in world.metrics.replies] == ["failed"]
    assert not await world.cached("openai/mini", user)


async def test_a_failure_after_the_first_delta_ends_the_stream_and_records_partial_use() -> None:
    broken = ScriptedChatModel(["Hel"], provider="openai", error=ProviderError("cut"))
    world = World({"openai": broken})
    user = await world.user()
    seen: list[object] = []

    async def read() -> None:
        command = CompleteChat(user_id=user.id, model="openai/mini", messages=QUESTION)
        async for event in world.handler().stream(command):
            seen.append(event)

    with pytest.raises(ProviderError, match="cut"):
        await read()

    assert seen == [StreamDelta(text="Hel")]
    [record] = await world.usage()
    assert record.completion_tokens == 1  # an estimate: the provider never reported usage
    assert [r["status"] for r in world.metrics.replies] == ["failed"]
    assert not await world.cached("openai/mini", user)


async def test_a_client_that_stops_reading_still_has_its_usage_recorded() -> None:
    model = openai_model()
    world = World({"openai": model})
    user = await world.user()
    command = CompleteChat(user_id=user.id, model="openai/mini", messages=QUESTION)

    events = world.handler().stream(command)
    assert await anext(events) == StreamDelta(text="Hello")
    await events.aclose()

    [record] = await world.usage()
    assert (record.model, record.completion_tokens) == ("openai/mini", 2)
    assert [r["status"] for r in world.metrics.replies] == ["aborted"]
    assert model.open_streams == 0
    assert not await world.cached("openai/mini", user)


class BlinkingUsage(InMemoryUsageRepository):
    """The database does not answer the first ``refused`` writes, then loses the answer of
    the next ``lost`` ones (written, but the caller hears an error)."""

    refused = 0
    lost = 0

    async def add(self, record: UsageRecord) -> None:
        if BlinkingUsage.refused:
            BlinkingUsage.refused -= 1
            raise ServiceUnavailable("The database is unavailable.")
        await super().add(record)
        if BlinkingUsage.lost:
            BlinkingUsage.lost -= 1
            raise ServiceUnavailable("The connection was lost.")


class BlinkingUnitOfWork(InMemoryUnitOfWork):
    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.usage = BlinkingUsage(self._transaction)


@pytest.mark.parametrize(("refused", "lost"), [(2, 0), (0, 1), (1, 1)])
async def test_usage_is_written_again_while_the_database_blinks_and_counted_once(
    refused: int, lost: int
) -> None:
    world = World({"openai": openai_model()})
    user = await world.user()
    BlinkingUsage.refused, BlinkingUsage.lost = refused, lost
    handler = CompleteChatHandler(
        BlinkingUnitOfWork(world.store), world.cache, CATALOG, world.models, world.enabled,
        clock=world.clock, ids=world.ids, metrics=world.metrics, write_backoff_s=0,
    )  # fmt: skip

    events = [
        e
        async for e in handler.stream(
            CompleteChat(user_id=user.id, model="openai/mini", messages=QUESTION)
        )
    ]

    assert isinstance(events[-1], StreamEnd)
    assert [e.text for e in events if isinstance(e, StreamDelta)] == ["Hello", ", world"]
    [record] = await world.usage()
    assert (record.prompt_tokens, record.completion_tokens) == (10, 2)


async def test_usage_that_cannot_be_written_fails_the_reply_after_its_attempts() -> None:
    world = World({"openai": openai_model()})
    user = await world.user()
    BlinkingUsage.refused, BlinkingUsage.lost = 3, 0
    handler = CompleteChatHandler(
        BlinkingUnitOfWork(world.store), world.cache, CATALOG, world.models, world.enabled,
        clock=world.clock, ids=world.ids, metrics=world.metrics, write_attempts=3,
        write_backoff_s=0,
    )  # fmt: skip

    with pytest.raises(ServiceUnavailable):
        async for _ in handler.stream(
            CompleteChat(user_id=user.id, model="openai/mini", messages=QUESTION)
        ):
            pass

    assert BlinkingUsage.refused == 0  # all three attempts were made
    assert await world.usage() == []


@pytest.mark.parametrize(
    ("deltas", "finish_reason"), [((), "stop"), (("half",), "unknown")], ids=["empty", "unknown"]
)
async def test_a_reply_without_anything_said_or_with_an_unknown_end_is_never_cached(
    deltas: tuple[str, ...], finish_reason: str
) -> None:
    """An empty answer (``[DONE]`` alone) or one whose end the provider never gave would be
    replayed to every identical question for an hour: it is answered, and asked again."""
    model = ScriptedChatModel(deltas, provider="openai", finish_reason=finish_reason)
    world = World({"openai": model})
    user = await world.user()

    await complete(world, user, "openai/mini")
    await complete(world, user, "openai/mini")

    assert not await world.cached("openai/mini", user)
    assert len(model.requests) == 2
    assert world.metrics.cache == {"miss": 2}


@pytest.mark.parametrize(
    ("chars", "sent"),
    [(9, 2000), (26_000, 8000 - (6500 + 4)), (30_000, 1024)],
    ids=["short: the quarter of the window", "long: what it leaves", "longer: at least 1,024"],
)
async def test_claude_asked_no_max_tokens_is_sent_what_the_window_leaves_after_the_prompt(
    chars: int, sent: int
) -> None:
    """Nothing is trimmed here: the cap sent by default fits the window with the prompt, within
    the model's default cap (a quarter of an 8,000-token window) and never under 1,024."""
    claude = ScriptedChatModel(["Hi"], provider="anthropic")
    world = World({"anthropic": claude})
    user = await world.user()
    said = (PromptMessage(role=MessageRole.USER, content="x" * chars),)

    command = CompleteChat(user_id=user.id, model="anthropic/haiku", messages=said)
    [_, end] = [event async for event in world.handler().stream(command)]

    assert isinstance(end, StreamEnd)
    [request] = claude.requests
    assert request.default_max_tokens == sent
    assert request.params.max_tokens is None


def test_the_default_cap_of_a_conversation_sent_whole_is_what_a_large_window_leaves() -> None:
    large = msgspec.structs.replace(spec("anthropic/opus"), context_window=200_000)
    short = (PromptMessage(role=MessageRole.USER, content="hi"),)
    near_full = (PromptMessage(role=MessageRole.USER, content="x" * 4 * 195_000),)

    assert untrimmed_reply_cap(large, short) == 8192  # its default_max_tokens
    assert untrimmed_reply_cap(large, near_full) == 200_000 - (195_000 + 4)
    assert untrimmed_reply_cap(spec("openai/mini"), near_full) is None  # none required
