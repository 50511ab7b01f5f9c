"""Tool calling in the OpenAI and Anthropic adapters, against the loopback providers speaking
their documented wire formats (tests/support/fake_providers.py): what Whalli sends upstream
(tools, tool choice, the tool turns of the conversation) and how it reads the calls streamed
back (pieces split across chunks and across HTTP reads, parallel calls, text then a call)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.fake_providers import (
    API_KEY,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    FakeProviderServer,
    Reply,
    ScriptedCall,
    anthropic_default,
    anthropic_tool_stream,
    openai_chunk,
    openai_default,
    openai_tool_stream,
    split_pieces,
    sse,
)
from whalli.adapters.ai import StreamPolicy
from whalli.adapters.ai.anthropic import AnthropicChatModel
from whalli.adapters.ai.openai import OpenAIChatModel
from whalli.adapters.outbound_http import new_http_client
from whalli.domain.model.chats import MessageRole, PromptMessage, TokenUsage
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.tools import (
    ToolCall,
    ToolCallAssembly,
    ToolChoice,
    ToolChoiceMode,
    Tools,
    ToolSpec,
)
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamStart,
    ToolCallDelta,
)

FAST = StreamPolicy(max_attempts=1, connect_timeout=5.0, first_token_timeout=5.0, idle_timeout=5.0)
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
    "required": ["city"],
}
TOOLS = Tools(
    specs=(
        ToolSpec(name="get_weather", description="The weather now.", parameters=WEATHER_SCHEMA),
        ToolSpec(name="now"),
    )
)
ASKED = PromptMessage(role=MessageRole.USER, content="Weather in Paris and Oslo?")
PARIS = ScriptedCall("call_paris", "get_weather", ['{"ci', 'ty": ', '"Par', 'is", "unit": "C"}'])
OSLO = ScriptedCall("call_oslo", "get_weather", ['{"city": "Oslo"}'])
USAGE = TokenUsage(prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)


def request(tools: Tools | None = TOOLS, *messages: PromptMessage) -> CompletionRequest:
    return CompletionRequest(model="test-model", messages=messages or (ASKED,), tools=tools)


async def collect(model: ChatModel, request: CompletionRequest) -> list[StreamEvent]:
    """The answer's events (the prompt's count at the start left out)."""
    return [e async for e in model.stream(request) if not isinstance(e, StreamStart)]


def calls_of(events: list[StreamEvent]) -> tuple[ToolCall, ...]:
    assembly = ToolCallAssembly()
    for event in events:
        if isinstance(event, ToolCallDelta):
            assembly.add(event.index, event.id, event.name, event.arguments)
    return assembly.calls()


def as_call(call: ScriptedCall) -> ToolCall:
    return ToolCall(id=call.id, name=call.name, arguments=call.arguments)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = new_http_client(timeout=5.0, max_connections=10, max_keepalive_connections=5)
    async with client:
        yield client


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer(openai_default()) as server:
        yield server


@pytest.fixture
async def anthropic_server() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer(anthropic_default()) as server:
        yield server


def openai_model(http: httpx.AsyncClient, server: FakeProviderServer) -> OpenAIChatModel:
    return OpenAIChatModel(http, base_url=f"{server.url}/v1", api_key=API_KEY, policy=FAST)


def anthropic_model(http: httpx.AsyncClient, server: FakeProviderServer) -> AnthropicChatModel:
    return AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)


CONVERSATION = (
    PromptMessage(role=MessageRole.SYSTEM, content="Be brief."),
    ASKED,
    PromptMessage(
        role=MessageRole.ASSISTANT,
        content="Looking.",
        tool_calls=(as_call(PARIS), as_call(OSLO)),
    ),
    PromptMessage(role=MessageRole.TOOL, content="18°C", tool_call_id="call_paris"),
    PromptMessage(role=MessageRole.TOOL, content="9°C", tool_call_id="call_oslo"),
    PromptMessage(role=MessageRole.USER, content="And in Fahrenheit?"),
    PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=(as_call(OSLO),)),
    PromptMessage(role=MessageRole.TOOL, content="48°F", tool_call_id="call_oslo"),
)


# --- OpenAI ---------------------------------------------------------------------------------------
async def test_openai_gets_the_tools_the_choice_and_the_tool_turns_as_its_api_takes_them(
    http: httpx.AsyncClient, openai_server: FakeProviderServer
) -> None:
    named = ToolChoice(mode=ToolChoiceMode.FUNCTION, name="get_weather")
    tools = Tools(specs=(*TOOLS.specs[:1], ToolSpec(name="now", strict=True)), choice=named,
                  parallel=False)  # fmt: skip

    await collect(openai_model(http, openai_server), request(tools, *CONVERSATION))

    sent = openai_server.requests[-1].body
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather now.",
                "parameters": WEATHER_SCHEMA,
            },
        },
        {"type": "function", "function": {"name": "now", "strict": True}},
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": ASKED.content},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "call_paris",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": PARIS.arguments},
                },
                {
                    "id": "call_oslo",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": OSLO.arguments},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_paris", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_oslo", "content": "9°C"},
        {"role": "user", "content": "And in Fahrenheit?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_oslo",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": OSLO.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_oslo", "content": "48°F"},
    ]


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        (ToolChoice(mode=ToolChoiceMode.AUTO), "auto"),
        (ToolChoice(mode=ToolChoiceMode.REQUIRED), "required"),
        (ToolChoice(mode=ToolChoiceMode.NONE), "none"),
    ],
)
async def test_openai_gets_the_tool_choice_modes_by_name(
    http: httpx.AsyncClient, openai_server: FakeProviderServer, choice: ToolChoice, sent: str
) -> None:
    tools = Tools(specs=TOOLS.specs, choice=choice)

    await collect(openai_model(http, openai_server), request(tools))

    body = openai_server.requests[-1].body
    assert body["tool_choice"] == sent
    assert "parallel_tool_calls" not in body


async def test_openai_gets_no_tool_fields_without_tools(
    http: httpx.AsyncClient, openai_server: FakeProviderServer
) -> None:
    await collect(openai_model(http, openai_server), request(None))

    body = openai_server.requests[-1].body
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(body)
    assert body["messages"] == [{"role": "user", "content": ASKED.content}]


@pytest.mark.parametrize("read_size", [None, 7], ids=["chunk_per_event", "seven_byte_reads"])
async def test_an_openai_call_split_across_many_chunks_is_read_piece_by_piece(
    http: httpx.AsyncClient, openai_server: FakeProviderServer, read_size: int | None
) -> None:
    pieces = openai_tool_stream([PARIS])
    openai_server.script(Reply(chunks=split_pieces(pieces, read_size) if read_size else pieces))

    events = await collect(openai_model(http, openai_server), request())

    assert events[0] == ToolCallDelta(index=0, id="call_paris", name="get_weather", arguments="")
    assert events[1:-1] == [ToolCallDelta(index=0, arguments=p) for p in PARIS.pieces]
    assert calls_of(events) == (as_call(PARIS),)
    assert events[-1] == StreamEnd(finish_reason="tool_calls", usage=USAGE)


async def test_two_parallel_openai_calls_after_some_text(
    http: httpx.AsyncClient, openai_server: FakeProviderServer
) -> None:
    openai_server.script(Reply(chunks=openai_tool_stream([PARIS, OSLO], ["Let me ", "look."])))

    events = await collect(openai_model(http, openai_server), request())

    assert [e.text for e in events if isinstance(e, StreamDelta)] == ["Let me ", "look."]
    assert calls_of(events) == (as_call(PARIS), as_call(OSLO))
    assert {e.index for e in events if isinstance(e, ToolCallDelta) and e.id} == {0, 1}
    assert events[-1] == StreamEnd(finish_reason="tool_calls", usage=USAGE)


async def test_openai_calls_in_a_json_completion_of_a_server_ignoring_stream_true(
    http: httpx.AsyncClient, openai_server: FakeProviderServer
) -> None:
    calls = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in (PARIS, OSLO)
    ]
    message = {"role": "assistant", "content": None, "tool_calls": calls}
    usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS}
    completion = {
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
        "usage": usage,
    }
    openai_server.script(Reply(body=completion))

    events = await collect(openai_model(http, openai_server), request())

    assert calls_of(events) == (as_call(PARIS), as_call(OSLO))
    assert events[-1] == StreamEnd(finish_reason="tool_calls", usage=USAGE)


# --- Anthropic ------------------------------------------------------------------------------------
async def test_anthropic_gets_its_own_tool_shapes_and_tool_turns_as_blocks(
    http: httpx.AsyncClient, anthropic_server: FakeProviderServer
) -> None:
    await collect(anthropic_model(http, anthropic_server), request(TOOLS, *CONVERSATION))

    sent = anthropic_server.requests[-1].body
    assert sent["tools"] == [
        {"name": "get_weather", "description": "The weather now.", "input_schema": WEATHER_SCHEMA},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in sent
    cached = {"cache_control": {"type": "ephemeral"}}  # the prompt cache's breakpoints
    assert sent["system"] == [{"type": "text", "text": "Be brief.", **cached}]
    paris, oslo = json.loads(PARIS.arguments), json.loads(OSLO.arguments)
    assert sent["messages"] == [
        {"role": "user", "content": ASKED.content},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "call_paris", "name": "get_weather", "input": paris},
                {"type": "tool_use", "id": "call_oslo", "name": "get_weather", "input": oslo},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_paris", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "call_oslo", "content": "9°C"},
                {"type": "text", "text": "And in Fahrenheit?", **cached},  # the last step's end
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_oslo", "name": "get_weather", "input": oslo}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_oslo", "content": "48°F", **cached}
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "sent"),
    [
        (ToolChoice(mode=ToolChoiceMode.AUTO), None, {"type": "auto"}),
        (ToolChoice(mode=ToolChoiceMode.REQUIRED), None, {"type": "any"}),
        (ToolChoice(mode=ToolChoiceMode.NONE), None, {"type": "none"}),
        (
            ToolChoice(mode=ToolChoiceMode.FUNCTION, name="now"),
            None,
            {"type": "tool", "name": "now"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            ToolChoice(mode=ToolChoiceMode.REQUIRED),
            False,
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        (ToolChoice(mode=ToolChoiceMode.AUTO), True, {"type": "auto"}),
    ],
)
async def test_anthropic_gets_the_tool_choice_in_its_own_words(
    http: httpx.AsyncClient,
    anthropic_server: FakeProviderServer,
    choice: ToolChoice | None,
    parallel: bool | None,
    sent: dict[str, Any],
) -> None:
    tools = Tools(specs=TOOLS.specs, choice=choice, parallel=parallel)

    await collect(anthropic_model(http, anthropic_server), request(tools))

    assert anthropic_server.requests[-1].body["tool_choice"] == sent


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"text"'])
async def test_tool_call_arguments_anthropic_cannot_take_are_refused_before_sending(
    http: httpx.AsyncClient, anthropic_server: FakeProviderServer, arguments: str
) -> None:
    call = ToolCall(id="call_1", name="now", arguments=arguments)
    messages = (ASKED, PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=(call,)))

    with pytest.raises(InvalidInput, match="must be a JSON object") as raised:
        await collect(anthropic_model(http, anthropic_server), request(TOOLS, *messages))

    assert raised.value.details["field"] == "messages[1].tool_calls[0].function.arguments"
    assert anthropic_server.requests == []


async def test_tool_turns_without_the_tools_are_refused_for_anthropic_before_sending(
    http: httpx.AsyncClient, anthropic_server: FakeProviderServer
) -> None:
    call = ToolCall(id="call_1", name="now", arguments="{}")
    messages = (
        ASKED,
        PromptMessage(role=MessageRole.ASSISTANT, content="", tool_calls=(call,)),
        PromptMessage(role=MessageRole.TOOL, content="12:00", tool_call_id="call_1"),
    )

    with pytest.raises(InvalidInput, match="offers the tools") as raised:
        await collect(anthropic_model(http, anthropic_server), request(None, *messages))

    assert raised.value.details["field"] == "tools"
    assert anthropic_server.requests == []


async def test_anthropic_text_then_a_tool_use_in_one_reply(
    http: httpx.AsyncClient, anthropic_server: FakeProviderServer
) -> None:
    anthropic_server.script(Reply(chunks=anthropic_tool_stream([PARIS], ["I will ", "check."])))

    events = await collect(anthropic_model(http, anthropic_server), request())

    assert events[:3] == [
        StreamDelta(text="I will "),
        StreamDelta(text="check."),
        ToolCallDelta(index=0, id="call_paris", name="get_weather"),
    ]
    assert events[3:-1] == [ToolCallDelta(index=0, arguments=p) for p in PARIS.pieces]
    assert calls_of(events) == (as_call(PARIS),)
    assert events[-1] == StreamEnd(finish_reason="tool_calls", usage=USAGE)


async def test_two_parallel_anthropic_calls_split_across_http_reads_count_from_zero(
    http: httpx.AsyncClient, anthropic_server: FakeProviderServer
) -> None:
    no_input = ScriptedCall("call_now", "now", [])
    pieces = anthropic_tool_stream([PARIS, no_input], ["Two calls."])
    anthropic_server.script(Reply(chunks=split_pieces(pieces, 11)))

    events = await collect(anthropic_model(http, anthropic_server), request())

    starts = [e for e in events if isinstance(e, ToolCallDelta) and e.id]
    assert [(e.index, e.id) for e in starts] == [(0, "call_paris"), (1, "call_now")]
    # a call without input (only the empty piece) has {} as arguments, as OpenAI clients parse
    assert calls_of(events) == (as_call(PARIS), ToolCall(id="call_now", name="now", arguments="{}"))
    assert events[-1] == StreamEnd(finish_reason="tool_calls", usage=USAGE)


async def test_an_openai_compatible_server_sending_no_call_id_gets_one_made_up(
    http: httpx.AsyncClient, openai_server: FakeProviderServer
) -> None:
    # Some compatible servers leave the id out; a client could not answer such a call.
    first = {"index": 0, "type": "function", "function": {"name": "now", "arguments": "{}"}}
    pieces = [
        sse(openai_chunk({"role": "assistant", "content": None})),
        sse(openai_chunk({"tool_calls": [first]})),
        sse(openai_chunk({}, "tool_calls")),
        sse("[DONE]"),
    ]
    openai_server.script(Reply(chunks=pieces))

    events = await collect(openai_model(http, openai_server), request())

    [call] = calls_of(events)
    assert call.id.startswith("call_")
    assert len(call.id) > len("call_")
    assert (call.name, call.arguments) == ("now", "{}")
