"""/v1 tool calling: OpenAI's request shapes validated, calls answered as OpenAI answers them
(streamed pieces, an assembled ``message.tool_calls``), on the fake container."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import seed_caller
from tests.unit.http.fakes import FakeContainer
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.domain.model.chats import MessageRole, PromptMessage
from whalli.domain.model.tools import ToolCall, ToolChoice, ToolChoiceMode, Tools, ToolSpec
from whalli.ports.chat_model import ToolCallDelta

Client = AsyncTestClient[Litestar]
MODEL = "openai/gpt-4o-mini"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": SCHEMA,
    },
}
NOW = {"type": "function", "function": {"name": "now"}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
PIECES = [
    ToolCallDelta(index=0, id="call_a", name="get_weather"),
    ToolCallDelta(index=0, arguments='{"city": '),
    ToolCallDelta(index=0, arguments='"Paris"}'),
    ToolCallDelta(index=1, id="call_b", name="now", arguments="{}"),
]


@pytest.fixture
async def bearer(container: FakeContainer, client: Client) -> dict[str, str]:
    caller = await seed_caller(container, client, "ada")
    return {"Authorization": f"Bearer {caller.headers['X-API-Key']}"}


@pytest.fixture
def model(container: FakeContainer) -> ScriptedChatModel:
    scripted = ScriptedChatModel([], provider="openai", tool_calls=PIECES, finish_reason="stop")
    container.models["openai"] = scripted
    return scripted


def body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": ASK, "tools": [WEATHER, NOW], **extra}


def sse_chunks(text: str) -> list[dict[str, Any]]:
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert events[-1] == "[DONE]", text
    return [json.loads(e) for e in events[:-1]]


async def test_the_tools_and_the_choice_reach_the_model(
    client: Client, bearer: dict[str, str], model: ScriptedChatModel
) -> None:
    sent = body(
        tool_choice={"type": "function", "function": {"name": "now"}}, parallel_tool_calls=False
    )
    response = await client.post("/v1/chat/completions", json=sent, headers=bearer)

    assert response.status_code == 200, response.text
    [request] = model.requests
    assert request.tools == Tools(
        specs=(
            ToolSpec(
                name="get_weather",
                description="The weather in a city.",
                parameters=SCHEMA,
            ),
            ToolSpec(name="now"),
        ),
        choice=ToolChoice(mode=ToolChoiceMode.FUNCTION, name="now"),
        parallel=False,
    )


async def test_a_completion_with_tool_calls_has_them_assembled_and_null_content(
    client: Client, bearer: dict[str, str], model: ScriptedChatModel, container: FakeContainer
) -> None:
    response = await client.post("/v1/chat/completions", json=body(), headers=bearer)

    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
    }
    [record] = container.store.tables["usage_records"].values()
    assert record.model == MODEL


async def test_a_stream_carries_the_pieces_as_openai_streams_them(
    client: Client, bearer: dict[str, str], model: ScriptedChatModel
) -> None:
    model.deltas = ["Checking."]
    response = await client.post("/v1/chat/completions", json=body(stream=True), headers=bearer)

    assert response.status_code == 200, response.text
    deltas = [c["choices"][0]["delta"] for c in sse_chunks(response.text)]
    reasons = [c["choices"][0]["finish_reason"] for c in sse_chunks(response.text)]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": "Checking."},
        {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                         "function": {"name": "now", "arguments": "{}"}}]},
        {},
    ]  # fmt: skip
    assert reasons == [None] * 6 + ["tool_calls"]


async def test_a_tool_round_trip_reaches_the_model_as_prompt_messages(
    client: Client, bearer: dict[str, str], model: ScriptedChatModel
) -> None:
    model.tool_calls, model.deltas = [], ["It is 18°C."]
    call = {"id": "call_a", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "18"}]},
    ]

    response = await client.post(
        "/v1/chat/completions", json=body(messages=messages), headers=bearer
    )

    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert (message["content"], "tool_calls" in message) == ("It is 18°C.", False)
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    assert model.requests[0].messages == (
        PromptMessage(role=MessageRole.USER, content="Weather in Paris?"),
        PromptMessage(
            role=MessageRole.ASSISTANT,
            content="",
            tool_calls=(ToolCall(id="call_a", name="get_weather", arguments='{"city": "Paris"}'),),
        ),
        PromptMessage(role=MessageRole.TOOL, content="18", tool_call_id="call_a"),
    )


def _named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


BAD_REQUESTS: dict[str, tuple[dict[str, Any], str]] = {
    "name_with_a_space": (body(tools=[_named("get weather")]), "tools[0].function.name"),
    "name_too_long": (body(tools=[NOW, _named("x" * 65)]), "tools[1].function.name"),
    "empty_name": (body(tools=[_named("")]), "tools[0].function.name"),
    "too_many_tools": (body(tools=[_named(f"f{i}") for i in range(129)]), "tools"),
    "names_twice": (body(tools=[NOW, WEATHER, NOW]), "tools[2].function.name"),
    "choice_not_in_tools": (body(tool_choice=_named("elsewhere")), "tool_choice"),
    "choice_unknown_mode": (body(tool_choice="sometimes"), "tool_choice"),
    "choice_without_tools": (body(tools=None, tool_choice="required"), "tool_choice"),
    "named_choice_without_tools": (body(tools=[], tool_choice=_named("now")), "tool_choice"),
    "tool_type_not_function": (body(tools=[{"type": "code_interpreter", "function": {"name": "f"}}]), "tools[0].type"),  # noqa: E501
    "tool_answering_no_call": (
        body(messages=[*ASK, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]),
        "messages[1].tool_call_id",
    ),
    "tool_answering_a_later_call": (
        body(messages=[
            *ASK,
            {"role": "tool", "tool_call_id": "call_a", "content": "1"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "now", "arguments": "{}"}}
            ]},
        ]),
        "messages[1].tool_call_id",
    ),
    "tool_without_call_id": (
        body(messages=[*ASK, {"role": "tool", "content": "1"}]), "messages[1].tool_call_id"
    ),
    "functions_deprecated": (body(tools=None, functions=[{"name": "f"}]), "functions"),
    "response_format_unknown": (body(response_format={"type": "xml"}), "response_format.type"),
    "dev_echo_with_tools": (body(model="dev/echo"), "tools"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
@pytest.mark.parametrize("stream", [False, True])
async def test_a_bad_tool_request_is_a_400_naming_the_field_and_nothing_is_recorded(
    client: Client, bearer: dict[str, str], model: ScriptedChatModel, container: FakeContainer,
    case: tuple[dict[str, Any], str], stream: bool,
) -> None:  # fmt: skip
    sent, param = case

    response = await client.post(
        "/v1/chat/completions", json={**sent, "stream": stream}, headers=bearer
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"]
    assert model.requests == []
    assert not container.store.tables["usage_records"]
    assert container.chat_metrics.cache == {}


@pytest.mark.parametrize(
    "extra",
    [{"tools": []}, {"tool_choice": "none"}, {"tools": [], "tool_choice": "none"},
     {"parallel_tool_calls": True}],
    ids=["empty_tools", "choice_none", "empty_tools_choice_none", "parallel_alone"],
)  # fmt: skip
async def test_tool_fields_that_ask_for_nothing_are_accepted_without_tools(
    client: Client, bearer: dict[str, str], extra: dict[str, Any]
) -> None:
    sent = {"model": "dev/echo", "messages": ASK, **extra}

    response = await client.post("/v1/chat/completions", json=sent, headers=bearer)

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Weather in Paris?"
