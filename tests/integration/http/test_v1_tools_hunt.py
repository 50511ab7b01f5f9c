"""Bug hunt on tool calling through /v1/chat/completions: the real app and container, the official
``openai`` SDK (or raw HTTP where the wire itself is under test), and loopback providers
speaking OpenAI's and Anthropic's documented streams. Tests marked ``xfail(strict=True)``
assert the correct behaviour of a defect found; the others pin behaviour that is right."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.http.test_identity_end_to_end import _settings
from tests.integration.http.test_openai_sdk_end_to_end import _api_key
from tests.integration.http.test_v1_tools import CLAUDE, GPT, PARIS, TIME, TOOLS
from tests.support.fake_prompt_cache import unmarked
from tests.support.fake_providers import (
    API_KEY,
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
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import Container, build_container
from whalli.entrypoints.http.asgi import build_app


@dataclass
class Hunt:
    openai: FakeProviderServer
    anthropic: FakeProviderServer
    sdk: openai.AsyncOpenAI
    http: httpx.AsyncClient
    secret: str
    container: Container
    user_id: uuid.UUID

    async def post(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.http.post(
            "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {self.secret}", **headers},
        )

    async def usage_rows(self, model: str) -> int:
        uow = await resolved(self.container.adapters.unit_of_work())
        async with uow:
            since = self.container.adapters.clock().now() - timedelta(hours=1)
            totals = await uow.usage.totals(self.user_id, since=since, model=model)
        return totals.requests


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Hunt]:
    async with (
        FakeProviderServer(openai_default()) as openai_fake,
        FakeProviderServer(anthropic_default()) as anthropic_fake,
    ):
        settings = _settings(
            stack_urls,
            unique,
            WHALLI_OPENAI_API_KEY=API_KEY,
            WHALLI_OPENAI_BASE_URL=openai_fake.url,
            WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic_fake.url,
        )
        container = build_container(settings)
        async with live_server(build_app(settings, container)) as client:
            secret, user_id = await _api_key(client)
            base_url = f"{client.base_url}".rstrip("/") + "/v1"
            sdk = openai.AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0)
            async with sdk:
                yield Hunt(openai_fake, anthropic_fake, sdk, client, secret, container, user_id)


def asked() -> list[ChatCompletionMessageParam]:
    # unique: the shared Redis may hold the cached replies of other runs
    return [{"role": "user", "content": f"Weather in Paris? {uuid.uuid4()}"}]


def chunks_of(response: httpx.Response) -> list[dict[str, Any]]:
    out = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line.removeprefix("data: ")))
    return out


def call_turn(*calls: tuple[str, str, str], content: Any = None) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in calls
        ],
    }


def anthropic_events(*events: dict[str, Any]) -> list[bytes]:
    return [sse(e, e["type"]) for e in events]


def message_start() -> dict[str, Any]:
    message = {
        "id": "msg_h",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-test",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }
    return {"type": "message_start", "message": message}


def message_end(stop_reason: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 7},
        },
        {"type": "message_stop"},
    ]


# --- streamed chunks ----------------------------------------------------------------------------
async def test_streamed_chunks_follow_openais_sequence(hunt: Hunt) -> None:
    hunt.openai.script(Reply(chunks=openai_tool_stream([PARIS, TIME])))
    body = {
        "model": GPT,
        "messages": asked(),
        "tools": TOOLS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await hunt.post(body)
    assert response.status_code == 200
    assert response.text.rstrip().endswith("data: [DONE]")
    chunks = chunks_of(response)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [
        tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    assert pieces[0] == {
        "index": 0,
        "id": "call_paris",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    for piece in pieces[1:5]:
        assert piece == {"index": 0, "function": {"arguments": piece["function"]["arguments"]}}
    assert pieces[5]["id"] == "call_time"
    assert pieces[5]["index"] == 1
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


async def test_interleaved_parallel_calls_are_put_together_by_index(hunt: Hunt) -> None:
    pieces = [sse(openai_chunk({"role": "assistant", "content": None}))]
    for index, call in enumerate([PARIS, TIME]):
        first = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        pieces.append(sse(openai_chunk({"tool_calls": [first]})))
    for fragment in PARIS.pieces:
        pieces.append(
            sse(openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}))
        )
        pieces.append(
            sse(openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": ""}}]}))
        )
    pieces.append(
        sse(openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}))
    )
    pieces.append(sse(openai_chunk({}, "tool_calls")))
    pieces.append(sse("[DONE]"))
    hunt.openai.script(Reply(chunks=pieces))
    completion = await hunt.sdk.chat.completions.create(model=GPT, messages=asked(), tools=TOOLS)
    calls = completion.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_paris", "get_weather", PARIS.arguments),
        ("call_time", "local_time", "{}"),
    ]


async def test_an_upstream_repeating_id_and_name_on_every_piece(hunt: Hunt) -> None:
    """Some OpenAI-compatible servers repeat the call's id and name on every piece; the SDK's
    stream accumulator joins string fields, so they must be sent on the first piece only."""
    pieces = [sse(openai_chunk({"role": "assistant", "content": None}))]
    for fragment in ("", *PARIS.pieces):
        piece = {
            "index": 0,
            "id": "call_paris",
            "type": "function",
            "function": {"name": "get_weather", "arguments": fragment},
        }
        pieces.append(sse(openai_chunk({"tool_calls": [piece]})))
    pieces += [sse(openai_chunk({}, "tool_calls")), sse("[DONE]")]
    hunt.openai.script(Reply(chunks=pieces), Reply(chunks=pieces))
    completion = await hunt.sdk.chat.completions.create(model=GPT, messages=asked(), tools=TOOLS)
    [call] = completion.choices[0].message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_paris",
        "get_weather",
        PARIS.arguments,
    )
    async with hunt.sdk.chat.completions.stream(model=GPT, messages=asked(), tools=TOOLS) as helper:
        async for _ in helper:
            pass
        final = await helper.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_paris",
        "get_weather",
        PARIS.arguments,
    )


async def test_a_call_without_id_gets_the_same_id_streamed_and_whole(hunt: Hunt) -> None:
    pieces = [sse(openai_chunk({"role": "assistant", "content": None}))]
    first = {"index": 0, "type": "function", "function": {"name": "local_time", "arguments": ""}}
    pieces.append(sse(openai_chunk({"tool_calls": [first]})))
    pieces.append(
        sse(openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    )
    pieces += [sse(openai_chunk({}, "tool_calls")), sse("[DONE]")]
    hunt.openai.script(Reply(chunks=pieces))
    async with hunt.sdk.chat.completions.stream(model=GPT, messages=asked(), tools=TOOLS) as helper:
        async for _ in helper:
            pass
        final = await helper.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert call.id.startswith("call_")
    assert len(call.id) > 5
    assert call.function.arguments == "{}"


# --- validation ---------------------------------------------------------------------------------
BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    (
        "129 tools",
        {"tools": [{"type": "function", "function": {"name": f"f{i}"}} for i in range(129)]},
        "tools",
    ),
    (
        "a bad name",
        {"tools": [{"type": "function", "function": {"name": "a b"}}]},
        "tools[0].function.name",
    ),
    ("a name twice", {"tools": [TOOLS[1], TOOLS[1]]}, "tools[1].function.name"),
    (
        "an unknown tool type",
        {"tools": [{"type": "web_search", "function": {"name": "x"}}]},
        "tools[0].type",
    ),
    (
        "a choice naming no tool",
        {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice",
    ),
    ("an unknown choice", {"tools": TOOLS, "tool_choice": "any"}, "tool_choice"),
    ("a choice without tools", {"tool_choice": "required"}, "tool_choice"),
    (
        "a tool turn answering nothing",
        {"tools": TOOLS, "extra": [{"role": "tool", "tool_call_id": "call_x", "content": "1"}]},
        "messages[1].tool_call_id",
    ),
    (
        "a tool turn without id",
        {
            "tools": TOOLS,
            "extra": [call_turn(("call_1", "local_time", "{}")), {"role": "tool", "content": "1"}],
        },
        "messages[2].tool_call_id",
    ),
]


@pytest.mark.parametrize(
    ("extra", "param"), [(b, p) for _, b, p in BAD_REQUESTS], ids=[n for n, _, _ in BAD_REQUESTS]
)
@pytest.mark.parametrize("stream", [False, True])
async def test_bad_tool_input_is_a_4xx_naming_the_param_and_reaches_nobody(
    hunt: Hunt, extra: dict[str, Any], param: str, stream: bool
) -> None:
    body: dict[str, Any] = {"model": GPT, "messages": asked(), "stream": stream}
    more = dict(extra)
    body["messages"] += more.pop("extra", [])
    body |= more
    response = await hunt.post(body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert hunt.openai.requests == []
    assert hunt.anthropic.requests == []
    assert await hunt.usage_rows(GPT) == 0


MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("a tool without function", {"tools": [{"type": "function"}]}, "tools[0]"),
    (
        "a choice object without function",
        {"tools": TOOLS, "tool_choice": {"type": "function"}},
        "tool_choice",
    ),
    (
        "a call without arguments",
        {
            "tools": TOOLS,
            "extra": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "local_time"}}
                    ],
                }
            ],
        },
        "messages[1].tool_calls[0].function",
    ),
    ("tools not a list", {"tools": "x"}, "tools"),
    ("a numeric choice", {"tools": TOOLS, "tool_choice": 5}, "tool_choice"),
    (
        "a textual parallel flag",
        {"tools": TOOLS, "parallel_tool_calls": "yes"},
        "parallel_tool_calls",
    ),
    (
        "a numeric name",
        {"tools": [{"type": "function", "function": {"name": 5}}]},
        "tools[0].function.name",
    ),
    (
        "a schema not an object",
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
        "tools[0].function.parameters",
    ),
    (
        "a call id not a string",
        {
            "tools": TOOLS,
            "extra": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": 1, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                }
            ],
        },
        "messages[1].tool_calls[0].id",
    ),
]


@pytest.mark.parametrize(
    ("extra", "param"), [(b, p) for _, b, p in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
async def test_a_malformed_tools_field_is_a_4xx_naming_where(
    hunt: Hunt, extra: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"model": GPT, "messages": asked()}
    more = dict(extra)
    body["messages"] += more.pop("extra", [])
    body |= more
    response = await hunt.post(body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["param"].startswith(param)
    assert hunt.openai.requests == []


async def test_unanswered_tool_calls_are_a_4xx_and_reach_no_provider(hunt: Hunt) -> None:
    messages = [
        *asked(),
        call_turn(("call_1", "local_time", "{}")),
        {"role": "user", "content": "and?"},
    ]
    response = await hunt.post({"model": GPT, "messages": messages, "tools": TOOLS})
    assert 400 <= response.status_code < 500, response.text
    assert hunt.openai.requests == []


async def test_duplicate_call_ids_in_one_turn_are_a_4xx(hunt: Hunt) -> None:
    messages = [
        *asked(),
        call_turn(("call_1", "local_time", "{}"), ("call_1", "local_time", "{}")),
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    ]
    response = await hunt.post({"model": CLAUDE, "messages": messages, "tools": TOOLS})
    assert 400 <= response.status_code < 500, response.text
    assert hunt.anthropic.requests == []


async def test_a_called_name_that_is_no_function_name_is_a_4xx(hunt: Hunt) -> None:
    messages = [
        *asked(),
        call_turn(("call_1", "x" * 5000 + " <script>", "{}")),
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    ]
    response = await hunt.post({"model": GPT, "messages": messages, "tools": TOOLS})
    assert 400 <= response.status_code < 500, response.text
    assert hunt.openai.requests == []


# --- Anthropic ----------------------------------------------------------------------------------
async def test_claude_input_json_split_mid_token_across_network_chunks(hunt: Hunt) -> None:
    arguments = ['{"ci', 'ty": "Pa', 'ris \\u00e9\\""}']
    call = ScriptedCall("toolu_1", "get_weather", arguments)
    stream = anthropic_tool_stream([call], ["Let me ", "check."])
    hunt.anthropic.script(Reply(chunks=split_pieces(stream, 7)))
    completion = await hunt.sdk.chat.completions.create(model=CLAUDE, messages=asked(), tools=TOOLS)
    message = completion.choices[0].message
    assert message.content == "Let me check."
    [got] = message.tool_calls or []
    assert (got.id, got.function.name) == ("toolu_1", "get_weather")
    assert json.loads(got.function.arguments) == {"city": 'Paris é"'}
    assert completion.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
async def test_claude_tool_use_with_empty_input_and_text_after_it(hunt: Hunt, stream: bool) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_t", "name": "local_time", "input": {}}
    events = anthropic_events(
        message_start(),
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Before."},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": tool_use},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "text_delta", "text": " After."},
        },
        {"type": "content_block_stop", "index": 2},
        *message_end("tool_use"),
    )
    hunt.anthropic.script(Reply(chunks=events))
    if stream:
        async with hunt.sdk.chat.completions.stream(
            model=CLAUDE, messages=asked(), tools=TOOLS
        ) as helper:
            async for _ in helper:
                pass
            completion = await helper.get_final_completion()
    else:
        completion = await hunt.sdk.chat.completions.create(
            model=CLAUDE, messages=asked(), tools=TOOLS
        )
    [choice] = completion.choices
    assert choice.message.content == "Before. After."
    assert [(c.id, c.function.arguments) for c in choice.message.tool_calls or []] == [
        ("toolu_t", "{}")
    ]
    assert choice.finish_reason == "tool_calls"
    if not stream:
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 7


async def test_claude_cut_by_max_tokens_mid_call_finishes_with_length(hunt: Hunt) -> None:
    tool_use = {"type": "tool_use", "id": "toolu_m", "name": "get_weather", "input": {}}
    events = anthropic_events(
        message_start(),
        {"type": "content_block_start", "index": 0, "content_block": tool_use},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"ci'},
        },
        {"type": "content_block_stop", "index": 0},
        *message_end("max_tokens"),
    )
    hunt.anthropic.script(Reply(chunks=events))
    completion = await hunt.sdk.chat.completions.create(
        model=CLAUDE, messages=asked(), tools=TOOLS, max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"
    [call] = completion.choices[0].message.tool_calls or []
    assert call.function.arguments == '{"ci'


@pytest.mark.parametrize(
    ("choice", "parallel", "sent"),
    [
        ("none", False, {"type": "none"}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "local_time"}},
            None,
            {"type": "tool", "name": "local_time"},
        ),
        ("required", True, {"type": "any"}),
    ],
)
async def test_claude_tool_choice_mapping(
    hunt: Hunt, choice: Any, parallel: bool | None, sent: dict[str, Any]
) -> None:
    body: dict[str, Any] = {"model": CLAUDE, "messages": asked(), "tools": TOOLS}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    response = await hunt.post(body)
    assert response.status_code == 200, response.text
    assert hunt.anthropic.requests[-1].body["tool_choice"] == sent


async def test_claude_tool_results_merge_into_one_user_turn_with_the_text_after(
    hunt: Hunt,
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        *asked(),
        call_turn(
            ("call_a", "get_weather", '{"city": "Paris"}'),
            ("call_b", "local_time", ""),
            content="Checking.",
        ),
        {
            "role": "tool",
            "tool_call_id": "call_a",
            "content": [{"type": "text", "text": "18"}, {"type": "text", "text": "°C"}],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {"role": "user", "content": "Thanks. And tomorrow?"},
    ]
    response = await hunt.post({"model": CLAUDE, "messages": messages, "tools": TOOLS})
    assert response.status_code == 200, response.text
    sent = unmarked(hunt.anthropic.requests[-1].body)
    assert sent["system"] == "Be brief."
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "call_a",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "call_b", "name": "local_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_a", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "call_b", "content": "12:00"},
                {"type": "text", "text": "Thanks. And tomorrow?"},
            ],
        },
    ]


@pytest.mark.parametrize("arguments", ["[]", "null", "1", '"x"', "{bad"])
async def test_non_object_arguments_for_claude_are_a_400(hunt: Hunt, arguments: str) -> None:
    messages = [
        *asked(),
        call_turn(("call_1", "local_time", arguments)),
        {"role": "tool", "tool_call_id": "call_1", "content": "?"},
    ]
    response = await hunt.post({"model": CLAUDE, "messages": messages, "tools": TOOLS})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "messages[1].tool_calls[0].function.arguments"
    assert hunt.anthropic.requests == []
    assert hunt.openai.requests == []
    assert await hunt.usage_rows(CLAUDE) == 0


# --- the cache ----------------------------------------------------------------------------------
async def final_streamed(hunt: Hunt, **kwargs: Any) -> Any:
    async with hunt.sdk.chat.completions.stream(**kwargs) as helper:
        async for _ in helper:
            pass
        return await helper.get_final_completion()


@pytest.mark.parametrize("model", [GPT, CLAUDE])
async def test_a_cached_tool_call_reply_replays_the_same_streamed_and_not(
    hunt: Hunt, model: str
) -> None:
    if model == GPT:
        hunt.openai.script(Reply(chunks=openai_tool_stream([PARIS, TIME], ["Let me check."])))
    else:
        hunt.anthropic.script(Reply(chunks=anthropic_tool_stream([PARIS, TIME], ["Let me check."])))
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": asked(),
        "tools": TOOLS,
        "temperature": 0,
    }
    first = await hunt.sdk.chat.completions.create(**kwargs)
    second = await final_streamed(hunt, **kwargs)
    third = await hunt.sdk.chat.completions.create(**kwargs)
    upstream = hunt.openai if model == GPT else hunt.anthropic
    assert len(upstream.requests) == 1
    for again in (second, third):
        assert again.choices[0].finish_reason == "tool_calls"
        assert again.choices[0].message.content == "Let me check."
        calls = again.choices[0].message.tool_calls or []
        assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
            (c.id, c.function.name, c.function.arguments)
            for c in first.choices[0].message.tool_calls or []
        ]
    assert await hunt.usage_rows(model) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"tool_choice": "required"},
        {"parallel_tool_calls": False},
        {"tools": TOOLS[:1]},
        {"tools": [{"type": "function", "function": {**TOOLS[1]["function"], "strict": True}}]},
        {"tools": None},
    ],
)
async def test_cache_keys_differ_when_the_tools_do(hunt: Hunt, change: dict[str, Any]) -> None:
    messages = asked()
    base: dict[str, Any] = {"model": GPT, "messages": messages, "tools": TOOLS, "temperature": 0}
    hunt.openai.script(Reply(chunks=openai_tool_stream([TIME])))
    first = await hunt.post(base)
    assert first.status_code == 200
    other = {k: v for k, v in (base | change).items() if v is not None}
    second = await hunt.post(other)
    assert second.status_code == 200, second.text
    assert len(hunt.openai.requests) == 2


async def test_a_tool_only_reply_streams_content_null_like_the_whole_one(hunt: Hunt) -> None:
    """OpenAI's stream of a reply that only calls tools starts with ``content: null``, so the
    SDK's accumulated message says ``content=None``, as the non-streamed one does."""
    hunt.openai.script(
        Reply(chunks=openai_tool_stream([TIME])), Reply(chunks=openai_tool_stream([TIME]))
    )
    whole = await hunt.sdk.chat.completions.create(model=GPT, messages=asked(), tools=TOOLS)
    streamed = await final_streamed(hunt, model=GPT, messages=asked(), tools=TOOLS)
    assert whole.choices[0].message.content is None
    assert streamed.choices[0].message.content is whole.choices[0].message.content


async def test_another_users_cached_tool_reply_does_not_leak(hunt: Hunt) -> None:
    messages = asked()
    hunt.openai.script(Reply(chunks=openai_tool_stream([PARIS])))
    body = {"model": GPT, "messages": messages, "tools": TOOLS, "temperature": 0}
    assert (await hunt.post(body)).status_code == 200
    other_secret, _ = await _api_key(hunt.http)
    response = await hunt.http.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {other_secret}"}
    )
    assert response.status_code == 200
    assert len(hunt.openai.requests) == 2  # asked upstream again: no shared entry


# --- hostile sizes ------------------------------------------------------------------------------
def deep_schema_json(depth: int) -> str:
    """A schema ``depth`` objects deep, as JSON text (too deep for the stdlib's encoder)."""
    return '{"type": "object", "properties": {"x": ' * depth + '{"type": "string"}' + "}}" * depth


@pytest.mark.parametrize("depth", [50, 2000, 20000])
@pytest.mark.parametrize("model", [GPT, CLAUDE])
async def test_a_deep_schema_fails_cleanly_or_goes_through(
    hunt: Hunt, depth: int, model: str
) -> None:
    messages = json.dumps(asked())
    raw = (
        f'{{"model": "{model}", "messages": {messages}, "temperature": 0, "tools": '
        f'[{{"type": "function", "function": {{"name": "deep", '
        f'"parameters": {deep_schema_json(depth)}}}}}]}}'
    )
    response = await hunt.http.post(
        "/v1/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {hunt.secret}", "Content-Type": "application/json"},
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


async def test_128_tools_with_long_descriptions_go_through(hunt: Hunt) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": "d" * 2000,
                "parameters": {"type": "object"},
            },
        }
        for i in range(128)
    ]
    response = await hunt.post({"model": CLAUDE, "messages": asked(), "tools": tools})
    assert response.status_code == 200, response.text
    assert len(hunt.anthropic.requests[-1].body["tools"]) == 128


async def test_enormous_arguments_come_back_whole(hunt: Hunt) -> None:
    # 400 KB: within what the model may write (its output cap at the adapters' generous
    # characters per token, 524,288 for gpt-4o-mini), past which a stream is cut as runaway
    big = '{"city": "' + "x" * 400_000 + '"}'
    call = ScriptedCall(
        "call_big", "get_weather", [big[i : i + 4096] for i in range(0, len(big), 4096)]
    )
    hunt.openai.script(Reply(chunks=openai_tool_stream([call])))
    completion = await hunt.sdk.chat.completions.create(model=GPT, messages=asked(), tools=TOOLS)
    [got] = completion.choices[0].message.tool_calls or []
    assert got.function.arguments == big


# --- usage, failures and fallbacks --------------------------------------------------------------
def openai_call_start(calls: list[ScriptedCall]) -> list[bytes]:
    """The beginning of a tool-call stream, without its end."""
    return openai_tool_stream(calls, usage=None)[:-2]


async def test_a_client_leaving_mid_call_records_usage_once(hunt: Hunt) -> None:
    hunt.openai.script(Reply(chunks=openai_call_start([PARIS]), hold=True))
    stream = await hunt.sdk.chat.completions.create(
        model=GPT, messages=asked(), tools=TOOLS, stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.tool_calls:
            break
    await stream.close()
    await hunt.openai.disconnected.wait()
    for _ in range(200):  # the record is written as the request is torn down
        if await hunt.usage_rows(GPT):
            break
        await asyncio.sleep(0.05)
    assert await hunt.usage_rows(GPT) == 1
    await asyncio.sleep(0.2)
    assert await hunt.usage_rows(GPT) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_provider_failing_mid_call_fails_the_reply_and_records_it_once(
    hunt: Hunt, stream: bool
) -> None:
    hunt.openai.script(Reply(chunks=openai_call_start([PARIS]), abort=True))
    body = {"model": GPT, "messages": asked(), "tools": TOOLS, "stream": stream}
    response = await hunt.post(body)
    if stream:
        assert response.status_code == 200
        assert "data: [DONE]" not in response.text
        assert "error" in chunks_of(response)[-1]
    else:
        assert response.status_code == 502
        assert response.json()["error"]["type"] == "server_error"
    assert len(hunt.openai.requests) == 1  # no retry, no fallback after the first piece
    assert await hunt.usage_rows(GPT) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_claude_down_falls_back_to_gpt_with_the_tools(hunt: Hunt, stream: bool) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    hunt.anthropic.script(*[Reply(status=529, body=overloaded)] * 3)
    hunt.openai.script(Reply(chunks=openai_tool_stream([PARIS])))
    messages = [
        *asked(),
        call_turn(("toolu_1", "local_time", "{}")),
        {"role": "tool", "tool_call_id": "toolu_1", "content": "12:00"},
    ]
    body = {
        "model": CLAUDE,
        "messages": messages,
        "tools": TOOLS,
        "stream": stream,
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    response = await hunt.post(body)
    assert response.status_code == 200, response.text
    if stream:
        chunks = chunks_of(response)
        assert chunks[0]["model"] == GPT
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    else:
        assert response.json()["model"] == GPT
        assert response.json()["choices"][0]["message"]["tool_calls"][0]["id"] == "call_paris"
    sent = hunt.openai.requests[-1].body
    assert sent["tools"] == TOOLS
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "12:00"}


async def test_dev_echo_refuses_tools_with_a_400(hunt: Hunt) -> None:
    response = await hunt.post({"model": "dev/echo", "messages": asked(), "tools": TOOLS})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools"


async def test_sdk_shapes_are_accepted(hunt: Hunt) -> None:
    """What the SDK and agents send: ``name`` fields, null content with calls, a tool's content
    as text parts, ``strict`` tools, ``developer`` role, ``tool_choice`` "none"."""
    strict_tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
    messages = [
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}], "name": "ann"},
        {**call_turn(("call_1", "get_weather", '{"city":"Paris"}'), content=""), "name": "bot"},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "18"}]},
    ]
    completion = await hunt.sdk.chat.completions.create(
        model=GPT,
        messages=messages,
        tools=[strict_tool],
        tool_choice="none",  # type: ignore[list-item]
    )
    assert completion.choices[0].message.content == "Hello, world!"
    sent = hunt.openai.requests[-1].body
    assert sent["tools"] == [strict_tool]
    assert sent["tool_choice"] == "none"
    assert sent["messages"][2]["content"] is None
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "18"}


# --- more upstream shapes -----------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
async def test_whole_calls_in_separate_chunks_without_index_stay_apart(
    hunt: Hunt, stream: bool
) -> None:
    """Some OpenAI-compatible servers (Gemini's, older Ollama) leave ``index`` out and send
    each call whole in a chunk of its own: a new id is a new call."""
    pieces = [sse(openai_chunk({"role": "assistant", "content": None}))]
    for call in (PARIS, TIME):
        whole = {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        pieces.append(sse(openai_chunk({"tool_calls": [whole]})))
    pieces += [sse(openai_chunk({}, "tool_calls")), sse("[DONE]")]
    hunt.openai.script(Reply(chunks=pieces))
    kwargs: dict[str, Any] = {"model": GPT, "messages": asked(), "tools": TOOLS}
    if stream:
        completion = await final_streamed(hunt, **kwargs)
    else:
        completion = await hunt.sdk.chat.completions.create(**kwargs)
    calls = completion.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_paris", "get_weather", PARIS.arguments),
        ("call_time", "local_time", "{}"),
    ]


@pytest.mark.parametrize("reason", ["stop", None])
async def test_calls_ending_with_stop_or_no_reason_finish_with_tool_calls(
    hunt: Hunt, reason: str | None
) -> None:
    pieces = openai_tool_stream([TIME], finish_reason="stop")
    if reason is None:
        pieces = [p for p in pieces if b'"finish_reason": "stop"' not in p]
    hunt.openai.script(Reply(chunks=pieces))
    completion = await hunt.sdk.chat.completions.create(model=GPT, messages=asked(), tools=TOOLS)
    assert completion.choices[0].finish_reason == "tool_calls"


async def test_a_tool_turn_after_a_user_turn_is_a_4xx(hunt: Hunt) -> None:
    messages = [
        *asked(),
        call_turn(("call_1", "local_time", "{}")),
        {"role": "user", "content": "hurry"},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    ]
    response = await hunt.post({"model": CLAUDE, "messages": messages, "tools": TOOLS})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["param"] == "messages[3].tool_call_id"
    assert hunt.anthropic.requests == []


async def test_a_tool_reply_without_upstream_usage_is_estimated_with_its_calls(
    hunt: Hunt,
) -> None:
    hunt.openai.script(Reply(chunks=openai_tool_stream([PARIS], usage=None)))
    completion = await hunt.sdk.chat.completions.create(model=GPT, messages=asked(), tools=TOOLS)
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens > 0
    assert await hunt.usage_rows(GPT) == 1


async def test_a_cached_tool_reply_streams_its_usage_chunk(hunt: Hunt) -> None:
    body = {
        "model": GPT,
        "messages": asked(),
        "tools": TOOLS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    hunt.openai.script(Reply(chunks=openai_tool_stream([PARIS])))
    first, second = chunks_of(await hunt.post(body)), chunks_of(await hunt.post(body))
    assert len(hunt.openai.requests) == 1
    assert second[-1]["usage"] == first[-1]["usage"]
    assert second[-2]["choices"][0]["finish_reason"] == "tool_calls"

    def calls(chunks: list[dict[str, Any]]) -> dict[int, tuple[str, str, str]]:
        out: dict[int, tuple[str, str, str]] = {}
        for chunk in chunks:
            for piece in (
                chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []
            ):
                id_, name, args = out.get(piece["index"], ("", "", ""))
                function = piece["function"]
                out[piece["index"]] = (
                    id_ + piece.get("id", ""),
                    name + function.get("name", ""),
                    args + function.get("arguments", ""),
                )
        return out

    assert calls(second) == calls(first) == {0: ("call_paris", "get_weather", PARIS.arguments)}
