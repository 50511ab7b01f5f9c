"""Structured outputs through the stateless completion (/v1): the format reaches the model, is
part of the cache key, is refused by a model that cannot answer in it, and fallbacks only go
to models that can."""

from __future__ import annotations

import pytest

from tests.unit.services.test_complete_chat import CATALOG, QUESTION, World, spec
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.catalog import ModelCatalog
from whalli.domain.model.errors import InvalidInput, ProviderError
from whalli.domain.model.response_format import FormatType, JsonSchema, ResponseFormat
from whalli.domain.model.users import User
from whalli.domain.services.chat.complete import CompleteChat, CompleteChatHandler
from whalli.ports.chat_model import StreamDelta

JSON_MODE = ResponseFormat(type=FormatType.JSON_OBJECT)
GREETING = ResponseFormat(
    type=FormatType.JSON_SCHEMA,
    json_schema=JsonSchema(name="greeting", schema={"type": "object"}, strict=True),
)


def json_model(provider: str = "openai") -> ScriptedChatModel:
    return ScriptedChatModel(['{"greeting"', ': "hi"}'], provider=provider)


async def complete(
    world: World,
    user: User,
    model: str = "openai/mini",
    *,
    response_format: ResponseFormat | None = GREETING,
    handler: CompleteChatHandler | None = None,
) -> list[object]:
    command = CompleteChat(
        user_id=user.id, model=model, messages=QUESTION, response_format=response_format
    )
    return [event async for event in (handler or world.handler()).stream(command)]


def with_echo(world: World, catalog: ModelCatalog) -> CompleteChatHandler:
    world.enabled.add("dev")
    return CompleteChatHandler(
        InMemoryUnitOfWork(world.store), world.cache, catalog, world.models, world.enabled,
        clock=world.clock, ids=world.ids, metrics=world.metrics,
    )  # fmt: skip


async def test_the_format_reaches_the_model_and_its_json_comes_back_as_text() -> None:
    model = json_model()
    world = World({"openai": model})
    user = await world.user()

    events = await complete(world, user)

    assert events[:2] == [StreamDelta(text='{"greeting"'), StreamDelta(text=': "hi"}')]
    assert model.requests[0].response_format == GREETING


async def test_each_format_is_its_own_cache_entry_and_the_same_one_is_a_hit() -> None:
    model = json_model()
    world = World({"openai": model})
    user = await world.user()

    for response_format in (GREETING, JSON_MODE, None, GREETING, JSON_MODE, None):
        await complete(world, user, response_format=response_format)

    assert [r.response_format for r in model.requests] == [GREETING, JSON_MODE, None]
    assert [r.cached for r in await world.usage()] == [False] * 3 + [True] * 3


async def test_a_model_that_cannot_answer_in_a_format_refuses_it_before_anything_happens() -> None:
    echo = ScriptedChatModel(["hi"], provider="dev")
    world = World({"dev": echo})
    handler = with_echo(world, ModelCatalog([*CATALOG, spec("dev/echo")]))
    user = await world.user()

    with pytest.raises(InvalidInput, match="'dev/echo' does not answer in a response_format"):
        await complete(world, user, "dev/echo", response_format=JSON_MODE, handler=handler)

    assert echo.requests == []
    assert await world.usage() == []
    assert world.metrics.cache == {}
    answered = await complete(world, user, "dev/echo", response_format=None, handler=handler)
    assert answered[0] == StreamDelta(text="hi")


async def test_with_a_format_a_fallback_that_cannot_answer_in_it_is_passed_over() -> None:
    broken = ScriptedChatModel([], provider="openai", error=ProviderError("overloaded"))
    echo = ScriptedChatModel(["hi"], provider="dev")
    world = World({"openai": broken, "dev": echo})
    catalog = ModelCatalog([spec("dev/echo"), spec("openai/mini", fallback="dev/echo")])
    handler = with_echo(world, catalog)
    user = await world.user()

    with pytest.raises(ProviderError, match="overloaded"):
        await complete(world, user, handler=handler)
    assert echo.requests == []  # its echo is not the JSON asked for
    without = await complete(world, user, response_format=None, handler=handler)
    assert without[0] == StreamDelta(text="hi")


async def test_with_a_format_a_failing_model_hands_over_to_a_fallback_that_keeps_it() -> None:
    broken = ScriptedChatModel([], provider="anthropic", error=ProviderError("overloaded"))
    fallback = json_model()
    world = World({"openai": fallback, "anthropic": broken})
    user = await world.user()
    handler = world.handler()

    await complete(world, user, "anthropic/haiku", handler=handler)

    assert handler.answered_by == "openai/mini"
    assert fallback.requests[0].response_format == GREETING
