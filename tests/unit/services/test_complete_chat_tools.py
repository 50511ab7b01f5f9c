"""Tool calling through the stateless completion (/v1): tools reach the model, its calls come
back with finish reason ``tool_calls``, usage is recorded, the cache keeps the calls, and
fallbacks only go to models that can call tools."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.services.test_complete_chat import CATALOG, World, spec
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.catalog import ModelCatalog
from whalli.domain.model.chats import MessageRole, PromptMessage, TokenUsage
from whalli.domain.model.errors import InvalidInput, ProviderError
from whalli.domain.model.tools import (
    ToolCall,
    ToolCallAssembly,
    ToolChoice,
    ToolChoiceMode,
    Tools,
    ToolSpec,
)
from whalli.domain.model.users import User
from whalli.domain.services.chat.complete import CompleteChat, CompleteChatHandler
from whalli.ports.chat_model import StreamDelta, StreamEnd, ToolCallDelta

TOOLS = Tools(
    specs=(ToolSpec(name="get_weather", parameters={"type": "object"}), ToolSpec(name="now")),
    choice=ToolChoice(mode=ToolChoiceMode.REQUIRED),
    parallel=True,
)
ASKED = (PromptMessage(role=MessageRole.USER, content="Weather in Paris and the time?"),)
PIECES = [
    ToolCallDelta(index=0, id="call_a", name="get_weather"),
    ToolCallDelta(index=0, arguments='{"city"'),
    ToolCallDelta(index=0, arguments=': "Paris"}'),
    ToolCallDelta(index=1, id="call_b", name="now", arguments="{}"),
]
CALLS = (
    ToolCall(id="call_a", name="get_weather", arguments='{"city": "Paris"}'),
    ToolCall(id="call_b", name="now", arguments="{}"),
)


def calling_model(
    provider: str = "openai", finish_reason: str = "tool_calls", usage: TokenUsage | None = None
) -> ScriptedChatModel:
    return ScriptedChatModel(
        ["Let me check."], provider=provider, finish_reason=finish_reason, tool_calls=PIECES,
        usage=usage or TokenUsage(prompt_tokens=30, completion_tokens=12),
    )  # fmt: skip


async def complete(
    world: World,
    user: User,
    model: str = "openai/mini",
    *,
    tools: Tools | None = TOOLS,
    messages: tuple[PromptMessage, ...] = ASKED,
    handler: CompleteChatHandler | None = None,
) -> list[object]:
    command = CompleteChat(user_id=user.id, model=model, messages=messages, tools=tools)
    return [event async for event in (handler or world.handler()).stream(command)]


def assembled(events: list[object]) -> tuple[ToolCall, ...]:
    assembly = ToolCallAssembly()
    for e in events:
        if isinstance(e, ToolCallDelta):
            assembly.add(e.index, e.id, e.name, e.arguments)
    return assembly.calls()


async def test_the_tools_reach_the_model_and_its_calls_come_back_with_usage_recorded() -> None:
    model = calling_model()
    world = World({"openai": model})
    user = await world.user()

    events = await complete(world, user)

    [request] = model.requests
    assert (request.tools, request.messages) == (TOOLS, ASKED)
    assert events == [StreamDelta(text="Let me check."), *PIECES, events[-1]]
    assert events[-1] == StreamEnd(
        finish_reason="tool_calls", usage=TokenUsage(prompt_tokens=30, completion_tokens=12)
    )
    [record] = await world.usage()
    assert (record.model, record.prompt_tokens, record.completion_tokens) == ("openai/mini", 30, 12)
    assert [r["status"] for r in world.metrics.replies] == ["complete"]


@pytest.mark.parametrize("said", ["stop", "unknown", "end_turn"])
async def test_a_reply_with_tool_calls_ends_with_tool_calls_whatever_plain_end_the_model_said(
    said: str,
) -> None:
    world = World({"openai": calling_model(finish_reason=said)})
    user = await world.user()

    events = await complete(world, user)

    assert isinstance(events[-1], StreamEnd)
    assert events[-1].finish_reason == "tool_calls"


async def test_a_reply_cut_by_its_length_in_a_tool_call_says_length() -> None:
    world = World({"openai": calling_model(finish_reason="length")})
    user = await world.user()

    events = await complete(world, user)

    assert isinstance(events[-1], StreamEnd)
    assert events[-1].finish_reason == "length"


async def test_a_reply_made_only_of_tool_calls_has_its_usage_estimated_when_unreported() -> None:
    model = ScriptedChatModel([], provider="openai", tool_calls=PIECES, usage=TokenUsage())
    world = World({"openai": model})
    user = await world.user()

    await complete(world, user)

    [record] = await world.usage()
    assert record.completion_tokens > 0
    assert record.prompt_tokens > 0


async def test_an_identical_request_with_tools_replays_the_text_and_the_whole_calls() -> None:
    model = calling_model()
    world = World({"openai": model})
    user = await world.user()

    first = await complete(world, user)
    second = await complete(world, user)

    assert len(model.requests) == 1
    assert second[0] == StreamDelta(text="Let me check.")
    assert second[1:-1] == [
        ToolCallDelta(index=0, id="call_a", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCallDelta(index=1, id="call_b", name="now", arguments="{}"),
    ]
    assert assembled(second) == assembled(first) == CALLS
    assert second[-1] == first[-1]
    assert [r.cached for r in await world.usage()] == [False, True]


async def test_other_tools_or_none_are_other_cache_entries() -> None:
    model = calling_model()
    world = World({"openai": model})
    user = await world.user()

    await complete(world, user)
    await complete(world, user, tools=Tools(specs=TOOLS.specs))  # another tool choice
    await complete(world, user, tools=None)

    assert len(model.requests) == 3
    assert [r.cached for r in await world.usage()] == [False, False, False]


async def test_a_model_that_cannot_call_tools_refuses_them_before_anything_happens() -> None:
    echo = ScriptedChatModel(["hi"], provider="dev")
    catalog = ModelCatalog([*CATALOG, spec("dev/echo")])
    world = World({"dev": echo})
    world.enabled.add("dev")
    handler = CompleteChatHandler(
        InMemoryUnitOfWork(world.store), world.cache, catalog, world.models, world.enabled,
        clock=world.clock, ids=world.ids, metrics=world.metrics,
    )  # fmt: skip
    user = await world.user()

    with pytest.raises(InvalidInput, match="'dev/echo' does not call tools") as raised:
        await complete(world, user, "dev/echo", handler=handler)

    assert raised.value.details["field"] == "tools"
    assert echo.requests == []
    assert await world.usage() == []
    assert world.metrics.cache == {}
    # without tools it answers as ever
    assert (await complete(world, user, "dev/echo", tools=None, handler=handler))[0] == (
        StreamDelta(text="hi")
    )


async def test_a_tool_turn_answering_no_call_is_refused_before_anything_happens() -> None:
    model = calling_model()
    world = World({"openai": model})
    user = await world.user()
    stray = (*ASKED, PromptMessage(role=MessageRole.TOOL, content="18", tool_call_id="call_x"))

    with pytest.raises(InvalidInput, match="answers no tool call") as raised:
        await complete(world, user, messages=stray)

    assert raised.value.details["field"] == "messages[1].tool_call_id"
    assert model.requests == []
    assert await world.usage() == []


async def test_a_whole_tool_round_trip_reaches_the_model() -> None:
    model = ScriptedChatModel(["It is 18°C."], provider="openai")
    world = World({"openai": model})
    user = await world.user()
    conversation = (
        *ASKED,
        PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=CALLS),
        PromptMessage(role=MessageRole.TOOL, content="18°C", tool_call_id="call_a"),
        PromptMessage(role=MessageRole.TOOL, content="12:00", tool_call_id="call_b"),
    )

    events = await complete(world, user, messages=conversation)

    assert events[0] == StreamDelta(text="It is 18°C.")
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].finish_reason == "stop"
    assert model.requests[0].messages == conversation


async def test_with_tools_a_failing_model_hands_over_to_a_fallback_that_calls_tools() -> None:
    broken = ScriptedChatModel([], provider="anthropic", error=ProviderError("overloaded"))
    fallback = calling_model()
    world = World({"openai": fallback, "anthropic": broken})
    user = await world.user()
    handler = world.handler()

    events = await complete(world, user, "anthropic/haiku", handler=handler)

    assert handler.answered_by == "openai/mini"
    assert fallback.requests[0].tools == TOOLS
    assert assembled(events) == CALLS
    [record] = await world.usage()
    assert record.model == "openai/mini"


async def test_with_tools_a_fallback_that_cannot_call_tools_is_passed_over() -> None:
    broken = ScriptedChatModel([], provider="openai", error=ProviderError("overloaded"))
    echo = ScriptedChatModel(["hi"], provider="dev")
    catalog = ModelCatalog([spec("dev/echo"), spec("openai/mini", fallback="dev/echo")])
    world = World({"openai": broken, "dev": echo})
    world.enabled.add("dev")
    handler = CompleteChatHandler(
        InMemoryUnitOfWork(world.store), world.cache, catalog, world.models, world.enabled,
        clock=world.clock, ids=world.ids, metrics=world.metrics, cache_ttl=timedelta(minutes=5),
    )  # fmt: skip
    user = await world.user()

    with pytest.raises(ProviderError, match="overloaded"):
        await complete(world, user, handler=handler)
    assert echo.requests == []  # it would have answered without the tools asked for
    without_tools = await complete(world, user, tools=None, handler=handler)
    assert without_tools[0] == StreamDelta(text="hi")


async def test_a_failure_after_the_first_piece_of_a_call_gets_no_fallback() -> None:
    broken = ScriptedChatModel(
        [], provider="anthropic", tool_calls=PIECES[:2], error=ProviderError("cut")
    )
    fallback = calling_model()
    world = World({"openai": fallback, "anthropic": broken})
    user = await world.user()

    with pytest.raises(ProviderError, match="cut"):
        await complete(world, user, "anthropic/haiku")

    assert fallback.requests == []
    [record] = await world.usage()
    assert record.model == "anthropic/haiku"
    assert [r["status"] for r in world.metrics.replies] == ["failed"]
