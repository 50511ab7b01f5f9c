"""Response formats (JSON mode, structured outputs) in the chat model adapters, against the
loopback providers speaking their documented wire formats: OpenAI-compatible servers get
``response_format`` as OpenAI takes it; Anthropic a forced tool, whose input streams back as
the reply's text, or, for a strict schema to a model that enforces schemas, its own
``output_config.format`` (and a strict function a strict tool); dev/echo refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.fake_providers import (
    API_KEY,
    JSON_PIECES,
    FakeProviderServer,
    Reply,
    ScriptedCall,
    anthropic_default,
    anthropic_tool_stream,
    openai_default,
)
from whalli.adapters.ai import StreamPolicy
from whalli.adapters.ai.anthropic import AnthropicChatModel
from whalli.adapters.ai.dev_echo import DevEchoChatModel
from whalli.adapters.ai.openai import OpenAIChatModel, OpenAIFlavour
from whalli.adapters.outbound_http import new_http_client
from whalli.domain.model.chats import GenerationParams, MessageRole, PromptMessage, ReasoningEffort
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.response_format import FormatType, JsonSchema, ResponseFormat
from whalli.domain.model.tools import ToolChoice, ToolChoiceMode, Tools, ToolSpec
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamStart,
    ToolCallDelta,
)

FAST = StreamPolicy(max_attempts=1, connect_timeout=5.0, first_token_timeout=5.0, idle_timeout=5.0)
SCHEMA = {"type": "object", "properties": {"greeting": {"type": "string"}}}
JSON_MODE = ResponseFormat(type=FormatType.JSON_OBJECT)
GREETING = ResponseFormat(
    type=FormatType.JSON_SCHEMA,
    json_schema=JsonSchema(name="greeting", schema=SCHEMA, strict=True, description="Hi."),
)
ASKED = (PromptMessage(role=MessageRole.USER, content="Greet me in JSON."),)


def request(
    response_format: ResponseFormat | None,
    tools: Tools | None = None,
    *,
    strict_outputs: bool = False,
    params: GenerationParams = GenerationParams(),
) -> CompletionRequest:
    return CompletionRequest(
        model="test-model", messages=ASKED, response_format=response_format, tools=tools,
        strict_outputs=strict_outputs, params=params,
    )  # fmt: skip


async def text_and_end(model: ChatModel, request: CompletionRequest) -> tuple[str, StreamEnd]:
    texts, ends = [], []
    async for event in model.stream(request):
        if isinstance(event, StreamStart):
            continue  # (the prompt's count at the start)
        assert isinstance(event, StreamDelta | StreamEnd), event  # no tool call
        if isinstance(event, StreamDelta):
            texts.append(event.text)
        else:
            ends.append(event)
    [end] = ends
    return "".join(texts), end


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = new_http_client(timeout=5.0, max_connections=10, max_keepalive_connections=5)
    async with client:
        yield client


@pytest.mark.parametrize("flavour", ["openai", "xai", "openai-compatible"])
@pytest.mark.parametrize(
    ("response_format", "sent"),
    [
        (JSON_MODE, {"type": "json_object"}),
        (
            GREETING,
            {"type": "json_schema", "json_schema": {
                "name": "greeting", "schema": SCHEMA, "strict": True, "description": "Hi."
            }},
        ),
        (
            ResponseFormat(type=FormatType.JSON_SCHEMA, json_schema=JsonSchema(name="free")),
            {"type": "json_schema", "json_schema": {"name": "free"}},
        ),
    ],
    ids=["json_object", "json_schema", "json_schema_without_schema"],
)  # fmt: skip
async def test_openai_compatible_servers_get_the_response_format_in_openais_shape(
    http: httpx.AsyncClient,
    flavour: OpenAIFlavour,
    response_format: ResponseFormat,
    sent: dict[str, object],
) -> None:
    async with FakeProviderServer(openai_default()) as server:
        model = OpenAIChatModel(
            http, base_url=f"{server.url}/v1", api_key=API_KEY, provider=flavour, policy=FAST
        )
        text, end = await text_and_end(model, request(response_format))

    assert (text, end.finish_reason) == ("".join(JSON_PIECES), "stop")
    assert server.requests[0].body["response_format"] == sent


async def test_an_openai_request_without_a_format_sends_none(http: httpx.AsyncClient) -> None:
    async with FakeProviderServer(openai_default()) as server:
        model = OpenAIChatModel(http, base_url=f"{server.url}/v1", api_key=API_KEY, policy=FAST)
        text, _ = await text_and_end(model, request(None))

    assert text == "Hello, world!"
    assert "response_format" not in server.requests[0].body


async def anthropic(
    http: httpx.AsyncClient, request: CompletionRequest, *replies: Reply
) -> tuple[str, StreamEnd, dict[str, object]]:
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(*replies)
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        text, end = await text_and_end(model, request)
    return text, end, server.requests[0].body


async def test_anthropic_answers_a_format_with_the_forced_tools_input_as_text(
    http: httpx.AsyncClient,
) -> None:
    text, end, body = await anthropic(http, request(GREETING))

    assert (text, end.finish_reason) == ("".join(JSON_PIECES), "stop")
    assert body["tools"] == [
        {"name": "json_response", "description": "Hi.", "input_schema": SCHEMA}
    ]
    assert body["tool_choice"] == {
        "type": "tool", "name": "json_response", "disable_parallel_tool_use": True
    }  # fmt: skip


NOW = ToolSpec(name="now")
FORMAT_TOOL = {"name": "json_response", "description": "Hi.", "input_schema": SCHEMA}
NOW_TOOL = {"name": "now", "input_schema": {"type": "object", "properties": {}}}


@pytest.mark.parametrize(
    ("choice", "offered", "tool_choice"),
    [
        (None, [NOW_TOOL, FORMAT_TOOL], {"type": "any"}),
        (ToolChoice(mode=ToolChoiceMode.AUTO), [NOW_TOOL, FORMAT_TOOL], {"type": "any"}),
        (
            ToolChoice(mode=ToolChoiceMode.NONE), [NOW_TOOL, FORMAT_TOOL],
            {"type": "tool", "name": "json_response", "disable_parallel_tool_use": True},
        ),
        (ToolChoice(mode=ToolChoiceMode.REQUIRED), [NOW_TOOL], {"type": "any"}),
        (
            ToolChoice(mode=ToolChoiceMode.FUNCTION, name="now"), [NOW_TOOL],
            {"type": "tool", "name": "now"},
        ),
    ],
    ids=["default", "auto", "none", "required", "named"],
)  # fmt: skip
async def test_with_the_callers_tools_anthropic_offers_the_formats_tool_beside_them(
    http: httpx.AsyncClient,
    choice: ToolChoice | None,
    offered: list[object],
    tool_choice: dict[str, object],
) -> None:
    """Claude answers in the format or calls one of their tools, never in free text; with
    ``none`` (an agent's final answer after its tool turns) the format's tool is forced."""
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        async for _ in model.stream(request(GREETING, Tools(specs=(NOW,), choice=choice))):
            pass
    body = server.requests[0].body

    assert (body["tools"], body["tool_choice"]) == (offered, tool_choice)


async def test_a_call_of_the_callers_tool_beside_a_format_is_a_tool_call(
    http: httpx.AsyncClient,
) -> None:
    call = ScriptedCall("toolu_1", "now", ['{"tz": "UTC"}'])
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=anthropic_tool_stream([call])))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = [e async for e in model.stream(request(GREETING, Tools(specs=(NOW,))))]

    assert [e.name for e in events if isinstance(e, ToolCallDelta) and e.name] == ["now"]
    assert not any(isinstance(e, StreamDelta) for e in events)
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].finish_reason == "tool_calls"


async def test_only_the_first_answer_in_the_format_is_the_reply(http: httpx.AsyncClient) -> None:
    calls = [
        ScriptedCall("toolu_1", "json_response", ['{"greeting": "Hi"}']),
        ScriptedCall("toolu_2", "json_response", ['{"greeting": "Yo"}']),
    ]
    text, end, _ = await anthropic(
        http, request(JSON_MODE), Reply(chunks=anthropic_tool_stream(calls))
    )

    assert (text, end.finish_reason) == ('{"greeting": "Hi"}', "stop")


async def test_a_forced_tool_without_input_is_the_empty_object(http: httpx.AsyncClient) -> None:
    empty = Reply(chunks=anthropic_tool_stream([ScriptedCall("toolu_1", "json_response", [])]))

    text, end, _ = await anthropic(http, request(JSON_MODE), empty)

    assert (text, end.finish_reason) == ("{}", "stop")


async def test_a_schema_without_a_type_is_given_the_object_type(http: httpx.AsyncClient) -> None:
    untyped = {"properties": {"greeting": {"type": "string"}}}
    asked = ResponseFormat(
        type=FormatType.JSON_SCHEMA, json_schema=JsonSchema(name="g", schema=untyped)
    )

    _, _, body = await anthropic(http, request(asked))

    assert body["tools"] == [
        {
            "name": "json_response",
            "description": "Give your answer with this tool: its input is the reply, as JSON.",
            "input_schema": {"type": "object", **untyped},
        }
    ]


async def test_the_same_tool_called_without_a_format_is_a_tool_call(
    http: httpx.AsyncClient,
) -> None:
    # the name alone does not make a call the reply: only in a request with a format
    tools = Tools(specs=(ToolSpec(name="json_response"),))
    call = ScriptedCall("toolu_1", "json_response", ["{}"])
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=anthropic_tool_stream([call])))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = [event async for event in model.stream(request(None, tools))]

    assert not any(isinstance(e, StreamDelta) for e in events)
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    ("asked", "tools", "field"),
    [
        (GREETING, Tools(specs=(ToolSpec(name="json_response"),)), "tools"),
        (
            ResponseFormat(
                type=FormatType.JSON_SCHEMA,
                json_schema=JsonSchema(name="g", schema={"type": "array"}),
            ),
            None,
            "response_format.json_schema.schema",
        ),
    ],
    ids=["with_a_tool_of_the_formats_name", "schema_of_an_array"],
)
async def test_what_anthropic_cannot_answer_in_a_format_is_refused_before_sending(
    http: httpx.AsyncClient, asked: ResponseFormat, tools: Tools | None, field: str
) -> None:
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        with pytest.raises(InvalidInput, match="Anthropic models") as raised:
            model.stream(request(asked, tools))

    assert raised.value.details["field"] == field
    assert server.requests == []


async def test_dev_echo_refuses_a_format() -> None:
    with pytest.raises(InvalidInput, match="text only") as raised:
        DevEchoChatModel().stream(request(JSON_MODE))

    assert raised.value.details["field"] == "response_format"


# --- a model that enforces schemas (Claude's structured outputs) --------------------------------
CLOSED = {**SCHEMA, "additionalProperties": False}  # as Claude enforces it (anthropic_schemas)
LOOSE = ResponseFormat(
    type=FormatType.JSON_SCHEMA, json_schema=JsonSchema(name="greeting", schema=SCHEMA)
)
STRICT_NOW = ToolSpec(name="now", parameters=SCHEMA, strict=True)


async def test_a_strict_schema_goes_as_claudes_own_format_and_its_text_is_the_reply(
    http: httpx.AsyncClient,
) -> None:
    text, end, body = await anthropic(http, request(GREETING, strict_outputs=True))

    assert (text, end.finish_reason) == ("".join(JSON_PIECES), "end_turn")
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": CLOSED}}
    assert "tools" not in body  # nothing forced
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("asked", "strict_outputs"),
    [(GREETING, False), (LOOSE, True), (JSON_MODE, True)],
    ids=["a_model_that_does_not_enforce", "a_schema_not_asked_strict", "json_mode"],
)
async def test_other_formats_and_models_keep_the_forced_tool(
    http: httpx.AsyncClient, asked: ResponseFormat, strict_outputs: bool
) -> None:
    text, end, body = await anthropic(http, request(asked, strict_outputs=strict_outputs))

    assert (text, end.finish_reason) == ("".join(JSON_PIECES), "stop")
    assert "output_config" not in body
    assert body["tool_choice"]["name"] == "json_response"
    assert "strict" not in body["tools"][0]


@pytest.mark.parametrize(
    ("strict_outputs", "spec", "sent"),
    [
        (True, STRICT_NOW, True),
        (False, STRICT_NOW, None),
        (True, ToolSpec(name="now", parameters=SCHEMA), None),
        (True, ToolSpec(name="now", parameters=SCHEMA, strict=False), None),
    ],
    ids=["strict_to_a_model_that_enforces", "to_one_that_does_not", "not_asked", "asked_not"],
)
async def test_a_function_asked_strict_is_a_strict_tool_for_a_model_that_enforces_schemas(
    http: httpx.AsyncClient, strict_outputs: bool, spec: ToolSpec, sent: bool | None
) -> None:
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        tools = Tools(specs=(spec,))
        async for _ in model.stream(request(None, tools, strict_outputs=strict_outputs)):
            pass
    [tool] = server.requests[0].body["tools"]

    assert tool.get("strict") == sent
    assert tool["input_schema"] == (CLOSED if sent else SCHEMA)  # enforced: as Claude takes it


async def test_with_claudes_own_format_the_callers_tools_are_offered_as_they_asked(
    http: httpx.AsyncClient,
) -> None:
    """Nothing is forced: a turn may call one of their tools (a tool call, not the reply), or
    answer in the format."""
    call = ScriptedCall("toolu_1", "now", ['{"greeting": "UTC"}'])
    tools = Tools(specs=(STRICT_NOW,), choice=ToolChoice(mode=ToolChoiceMode.AUTO))
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=anthropic_tool_stream([call])))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = [e async for e in model.stream(request(GREETING, tools, strict_outputs=True))]
    body = server.requests[0].body

    assert body["tools"] == [{"name": "now", "input_schema": CLOSED, "strict": True}]
    assert body["tool_choice"] == {"type": "auto"}
    assert body["output_config"]["format"]["schema"] == CLOSED
    assert [e.name for e in events if isinstance(e, ToolCallDelta) and e.name] == ["now"]
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].finish_reason == "tool_calls"


async def test_claude_may_think_before_answering_in_its_own_format(
    http: httpx.AsyncClient,
) -> None:
    """A forced tool and thinking do not go together (the API refuses them, and so does the
    adapter, before sending); Claude's own format does."""
    thinking = GenerationParams(reasoning_effort=ReasoningEffort.LOW)
    with pytest.raises(InvalidInput, match="cannot think"):
        await anthropic(http, request(GREETING, params=thinking))

    text, _, body = await anthropic(http, request(GREETING, strict_outputs=True, params=thinking))

    assert text == "".join(JSON_PIECES)
    assert body["thinking"]["type"] == "enabled"
    assert "output_config" in body


async def test_a_strict_schema_of_another_type_than_object_is_refused_before_sending(
    http: httpx.AsyncClient,
) -> None:
    listed = ResponseFormat(
        type=FormatType.JSON_SCHEMA,
        json_schema=JsonSchema(name="g", schema={"type": "array"}, strict=True),
    )
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        with pytest.raises(InvalidInput, match="must describe an object") as raised:
            model.stream(request(listed, strict_outputs=True))

    assert raised.value.details["field"] == "response_format.json_schema.schema"
    assert server.requests == []
