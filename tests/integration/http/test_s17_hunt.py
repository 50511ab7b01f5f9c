"""Hunt of three changes, end to end through the real app (Postgres, Redis) with providers on
loopback speaking their wire protocol:

1. Claude's own structured outputs (``output_config.format``, a strict tool) for the catalog's
   ``strict_outputs`` models; the loopback Anthropic here refuses what the Messages API is
   documented (and seen in the field) to refuse for those models;
2. /v1 streams' coalesced writes (the role's chunk with the first delta; the finish, usage and
   ``[DONE]`` in one write), read as raw SSE and through the official SDK;
3. the stream attach grace (``START_READ_GRACE``) after a start."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field

from tests.integration.http.test_chat_attach_elsewhere import team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import _settings
from tests.integration.http.test_openai_sdk_end_to_end import _api_key
from tests.integration.http.test_v1_tools import Providers, providers
from tests.support.fake_providers import (
    API_KEY,
    JSON_PIECES,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    ScriptedCall,
    anthropic_default,
    anthropic_error,
    anthropic_error_event,
    anthropic_stream,
    anthropic_tool_stream,
    openai_default,
    sse,
)
from tests.support.live_server import live_server
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.domain.services.chat.attach_stream import START_READ_GRACE
from whalli.entrypoints.http.asgi import build_app

__all__ = ["providers"]

CLAUDE_STRICT = "anthropic/claude-haiku-4-5"  # strict_outputs = true in the shipped catalog
CLAUDE_LOOSE = "anthropic/claude-3-5-haiku"  # no strict_outputs
JSON_TEXT = "".join(JSON_PIECES)
SCHEMA = {
    "type": "object",
    "properties": {"greeting": {"type": "string"}},
    "required": ["greeting"],
    "additionalProperties": False,
}
STRICT_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "greeting", "schema": SCHEMA, "strict": True},
}
# The Claude models that refuse temperature and top_p together (Opus 4.1 and later, Sonnet and
# Haiku 4.5 and later): "`temperature` and `top_p` cannot both be specified for this model."
ONE_SAMPLER_ONLY = {"claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-6"}
# What Claude's structured outputs (output_config.format, a strict tool) refuse in a schema
UNSUPPORTED = {
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
}


def asked(text: str = "Greet me, in JSON.") -> list[ChatCompletionMessageParam]:
    # unique: the shared Redis may hold the cached replies of other runs
    return [{"role": "user", "content": f"{text} {uuid.uuid4()}"}]


def _schema_problem(schema: Any, where: str) -> str | None:
    """What Claude's structured outputs say of ``schema``, as the API words it; None: taken."""
    if isinstance(schema, list):
        for item in schema:
            if (problem := _schema_problem(item, where)) is not None:
                return problem
        return None
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    for key in schema:
        if key in UNSUPPORTED:
            return f"{where}: For '{kind}' type, property '{key}' is not supported"
    if kind == "object" and schema.get("additionalProperties") is not False:
        return f"{where}: For 'object' type, 'additionalProperties' must be explicitly set to false"
    for value in schema.values():
        if (problem := _schema_problem(value, where)) is not None:
            return problem
    return None


def _refused(request: RecordedRequest) -> Reply | None:
    """The 400 (``invalid_request_error``) the Messages API answers for what it refuses of the
    catalog's newer Claude models: both samplers at once, and a schema asked to be enforced
    (``output_config.format``, a tool with ``strict``) outside its JSON Schema subset."""
    body = request.body
    problem = None
    if body.get("model") in ONE_SAMPLER_ONLY and {"temperature", "top_p"} <= body.keys():
        problem = (
            "`temperature` and `top_p` cannot both be specified for this model. "
            "Please use only one."
        )
    output_format = (body.get("output_config") or {}).get("format")
    if problem is None and output_format is not None:
        problem = _schema_problem(output_format.get("schema"), "output_config.format.schema")
    for number, tool in enumerate(body.get("tools") or []):
        if problem is None and tool.get("strict") is True:
            problem = _schema_problem(tool.get("input_schema"), f"tools.{number}.custom")
    if problem is None:
        return None
    return Reply(status=400, body=anthropic_error("invalid_request_error", problem))


def anthropic_documented() -> Callable[[RecordedRequest], Reply]:
    """``anthropic_default``, refusing what the real API refuses (``_refused``)."""
    default = anthropic_default()
    return lambda request: _refused(request) or default(request)


def checked(reply: Reply) -> Callable[[RecordedRequest], Reply]:
    """A scripted reply, given only to a request the real API would take (``_refused``)."""
    return lambda request: _refused(request) or reply


@pytest.fixture
async def documented(providers: Providers) -> Providers:
    """``providers`` with the loopback Anthropic refusing as the real one does."""
    providers.anthropic._default = anthropic_documented()
    return providers


# --- 1. Claude's own structured outputs --------------------------------------------------------
class Rated(BaseModel):
    title: str
    stars: int = Field(ge=1, le=5)  # the SDK's strict schema keeps minimum and maximum


async def test_the_sdks_parse_of_a_model_with_bounds_is_answered_by_a_strict_claude(
    documented: Providers,
) -> None:
    documented.anthropic.script(
        checked(Reply(chunks=anthropic_stream(['{"title": "Dune", "stars": 5}'])))
    )

    completion = await documented.sdk.chat.completions.parse(
        model=CLAUDE_STRICT, messages=asked("Rate Dune."), response_format=Rated
    )

    assert completion.choices[0].message.parsed == Rated(title="Dune", stars=5)


async def test_the_sdks_strict_function_with_bounds_is_offered_to_a_strict_claude(
    documented: Providers,
) -> None:
    call = ScriptedCall("toolu_1", "Rated", ['{"title": "Dune", "stars": 5}'])
    documented.anthropic.script(checked(Reply(chunks=anthropic_tool_stream([call]))))

    completion = await documented.sdk.chat.completions.create(
        model=CLAUDE_STRICT,
        messages=asked("Rate Dune."),
        tools=[openai.pydantic_function_tool(Rated)],
    )

    [called] = completion.choices[0].message.tool_calls or []
    assert (called.function.name, json.loads(called.function.arguments)["stars"]) == ("Rated", 5)


async def test_the_same_bounded_model_through_a_claude_without_strict_outputs_is_answered(
    documented: Providers,
) -> None:
    """Before the change every Claude answered it: the forced tool's input_schema is not
    compiled into a grammar (the bounds are followed, not enforced)."""
    call = ScriptedCall("toolu_1", "json_response", ['{"title": "Dune", "stars": 5}'])
    documented.anthropic.script(checked(Reply(chunks=anthropic_tool_stream([call]))))

    completion = await documented.sdk.chat.completions.parse(
        model=CLAUDE_LOOSE, messages=asked("Rate Dune."), response_format=Rated
    )

    assert completion.choices[0].message.parsed == Rated(title="Dune", stars=5)
    sent = documented.anthropic.requests[-1].body
    assert "output_config" not in sent
    assert sent["tool_choice"]["name"] == "json_response"


async def test_a_strict_function_without_parameters_is_taken_by_a_strict_claude(
    documented: Providers,
) -> None:
    tool = {"type": "function", "function": {"name": "ping", "strict": True}}

    completion = await documented.sdk.chat.completions.create(
        model=CLAUDE_STRICT,
        messages=asked("Ping."),
        tools=[tool],  # type: ignore[list-item]
    )

    assert completion.choices[0].message.content == "Hello, world!"


async def test_temperature_and_top_p_together_are_taken_for_the_new_claude_models(
    documented: Providers,
) -> None:
    completion = await documented.sdk.chat.completions.create(
        model=CLAUDE_STRICT, messages=asked("Hello."), temperature=0.5, top_p=0.9
    )

    assert completion.choices[0].message.content == "Hello, world!"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"), [("max_tokens", "length"), ("refusal", "content_filter")]
)
async def test_claudes_own_format_cut_or_refused_finishes_as_openai_says(
    documented: Providers, stream: bool, stop_reason: str, finish_reason: str
) -> None:
    cut = anthropic_stream(['{"greet', 'ing": "Hel'], stop_reason=stop_reason)
    documented.anthropic.script(checked(Reply(chunks=cut)))
    sdk = documented.sdk.chat.completions
    if stream:
        texts, reasons = [], []
        async for chunk in await sdk.create(
            model=CLAUDE_STRICT, messages=asked(), response_format=STRICT_FORMAT, stream=True
        ):  # type: ignore[call-overload]
            for choice in chunk.choices:
                texts.append(choice.delta.content or "")
                if choice.finish_reason:
                    reasons.append(choice.finish_reason)
        content, reason = "".join(texts), reasons
    else:
        completion = await sdk.create(
            model=CLAUDE_STRICT,
            messages=asked(),
            response_format=STRICT_FORMAT,  # type: ignore[arg-type]
        )
        content, reason = (
            completion.choices[0].message.content,
            [completion.choices[0].finish_reason],
        )

    assert (content, reason) == ('{"greeting": "Hel', [finish_reason])
    assert "output_config" in documented.anthropic.requests[-1].body


async def test_claudes_own_format_beside_the_callers_tools_lets_it_call_one(
    documented: Providers,
) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": SCHEMA}}]
    call = ScriptedCall("toolu_1", "lookup", ['{"greeting": "x"}'])
    documented.anthropic.script(checked(Reply(chunks=anthropic_tool_stream([call]))))

    completion = await documented.sdk.chat.completions.create(
        model=CLAUDE_STRICT,
        messages=asked(),
        tools=tools,  # type: ignore[arg-type]
        response_format=STRICT_FORMAT,  # type: ignore[arg-type]
        stop=["END"],
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.arguments == '{"greeting": "x"}'
    sent = documented.anthropic.requests[-1].body
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert [t["name"] for t in sent["tools"]] == ["lookup"]  # no json_response beside them
    assert "tool_choice" not in sent
    assert sent["stop_sequences"] == ["END"]


async def test_claudes_own_format_after_a_tool_turn_is_sent_without_thinking(
    documented: Providers,
) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": SCHEMA}}]
    messages: list[Any] = [
        *asked(),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"greeting": "x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Hello, world!"},
    ]

    completion = await documented.sdk.chat.completions.create(
        model=CLAUDE_STRICT,
        messages=messages,
        tools=tools,  # type: ignore[arg-type]
        response_format=STRICT_FORMAT,  # type: ignore[arg-type]
        reasoning_effort="low",
    )

    assert (completion.choices[0].message.content, completion.choices[0].finish_reason) == (
        JSON_TEXT,
        "stop",
    )
    sent = documented.anthropic.requests[-1].body
    assert "thinking" not in sent  # a tool loop's turn: its signed thinking cannot go back
    assert sent["output_config"]["format"]["schema"] == SCHEMA
    assert [block["type"] for block in sent["messages"][-1]["content"]] == ["tool_result"]


async def test_claudes_own_format_with_a_required_tool_call_and_thinking_is_a_400(
    documented: Providers,
) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": SCHEMA}}]

    with pytest.raises(openai.BadRequestError, match="reasoning_effort"):
        await documented.sdk.chat.completions.create(
            model=CLAUDE_STRICT,
            messages=asked(),
            tools=tools,  # type: ignore[arg-type]
            tool_choice="required",
            response_format=STRICT_FORMAT,  # type: ignore[arg-type]
            reasoning_effort="low",
        )

    assert documented.anthropic.requests == []


# --- a strict Claude falling back to one without strict outputs --------------------------------
@pytest.fixture
async def strict_to_loose(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[Providers]:
    """The shipped catalog, but Claude Haiku 4.5 falls back to Claude 3.5 Haiku (no strict
    outputs); one attempt per model."""
    shipped = (Path(__file__).parents[3] / "catalog" / "models.toml").read_text()
    start = shipped.index('id = "anthropic/claude-haiku-4-5"')
    end = shipped.index("[[model]]", start)
    block = shipped[start:end].replace(
        'fallback = "openai/gpt-4o-mini"', 'fallback = "anthropic/claude-3-5-haiku"'
    )
    assert block != shipped[start:end]
    catalog = tmp_path / "models.toml"
    catalog.write_text(shipped[:start] + block + shipped[end:])
    async with (
        FakeProviderServer(openai_default()) as openai_fake,
        FakeProviderServer(anthropic_documented()) as anthropic_fake,
    ):
        settings = _settings(
            stack_urls, unique,
            WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=openai_fake.url,
            WHALLI_ANTHROPIC_API_KEY=API_KEY, WHALLI_ANTHROPIC_BASE_URL=anthropic_fake.url,
            WHALLI_CATALOG_PATH=str(catalog), WHALLI_PROVIDER_MAX_ATTEMPTS="1",
        )  # fmt: skip
        container = build_container(settings)
        async with live_server(build_app(settings, container)) as client:
            secret, user_id = await _api_key(client)
            base_url = f"{client.base_url}".rstrip("/") + "/v1"
            sdk = openai.AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0)
            async with sdk:
                yield Providers(openai_fake, anthropic_fake, sdk, container, user_id)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_strict_claudes_fallback_without_strict_outputs_answers_through_the_forced_tool(
    strict_to_loose: Providers, stream: bool
) -> None:
    overloaded = Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded"))
    strict_to_loose.anthropic.script(overloaded)
    sdk = strict_to_loose.sdk.chat.completions
    if stream:
        texts, reasons = [], []
        async for chunk in await sdk.create(
            model=CLAUDE_STRICT, messages=asked(), response_format=STRICT_FORMAT, stream=True
        ):  # type: ignore[call-overload]
            for choice in chunk.choices:
                texts.append(choice.delta.content or "")
                calls = choice.delta.tool_calls
                assert not calls
                if choice.finish_reason:
                    reasons.append(choice.finish_reason)
        answer = ("".join(texts), reasons)
    else:
        completion = await sdk.create(
            model=CLAUDE_STRICT,
            messages=asked(),
            response_format=STRICT_FORMAT,  # type: ignore[arg-type]
        )
        choice = completion.choices[0]
        assert not choice.message.tool_calls
        answer = (choice.message.content or "", [choice.finish_reason])

    assert answer == (JSON_TEXT, ["stop"])
    first, second = (r.body for r in strict_to_loose.anthropic.requests)
    assert (first["model"], "output_config" in first) == ("claude-haiku-4-5", True)
    assert second["model"] == "claude-3-5-haiku-latest"
    assert "output_config" not in second
    assert second["tool_choice"]["name"] == "json_response"


# --- 2. /v1 streams' coalesced writes ----------------------------------------------------------
async def raw_stream(providers: Providers, **body: Any) -> tuple[list[Any], bool]:
    """The ``data:`` payloads of a streamed /v1 completion (JSON decoded), and whether it ended
    with ``[DONE]`` (which is left out of the list)."""
    url = f"{providers.sdk.base_url}".rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {providers.sdk.api_key}"}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(url, json={"stream": True, **body}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e.strip()]
    payloads = []
    for event in events:
        lines = [line for line in event.split("\n") if not line.startswith(":")]
        assert all(line.startswith("data: ") for line in lines), event
        payloads.append("\n".join(line.removeprefix("data: ") for line in lines))
    done = bool(payloads) and payloads[-1] == "[DONE]"
    if done:
        payloads.pop()
    assert "[DONE]" not in payloads
    return [json.loads(p) for p in payloads], done


def _shape_checked(chunks: list[Any], include_usage: bool) -> None:
    """One completion id, the role only in the first chunk, one finish, the usage (when asked
    for) after it with no choices, and every chunk with choices a chat.completion.chunk."""
    assert len({c["id"] for c in chunks}) == 1
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    roles = [i for i, c in enumerate(chunks) for ch in c["choices"] if "role" in ch["delta"]]
    assert roles == [0]
    finishes = [i for i, c in enumerate(chunks) for ch in c["choices"] if ch["finish_reason"]]
    if include_usage:
        assert finishes == [len(chunks) - 2]
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["total_tokens"] == 15  # 11 + 4, the loopback's counts
    else:
        assert finishes == [len(chunks) - 1]
        assert all(c.get("usage") is None for c in chunks)


@pytest.mark.parametrize("include_usage", [False, True])
async def test_a_coalesced_text_stream_reads_chunk_by_chunk_as_openais(
    providers: Providers, include_usage: bool
) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks, done = await raw_stream(providers, model=CLAUDE_LOOSE, messages=asked("Hi."), **options)

    assert done
    _shape_checked(chunks, include_usage)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == "Hello, world!"


@pytest.mark.parametrize("include_usage", [False, True])
async def test_an_empty_reply_streams_the_role_the_finish_and_done(
    providers: Providers, include_usage: bool
) -> None:
    providers.anthropic.script(checked(Reply(chunks=anthropic_stream([]))))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}

    chunks, done = await raw_stream(providers, model=CLAUDE_LOOSE, messages=asked(), **options)

    assert done
    _shape_checked(chunks, include_usage)
    opening, finish = (c["choices"][0] for c in chunks[:2])  # one write, two chunks
    assert (opening["delta"], opening["finish_reason"]) == (
        {"role": "assistant", "content": ""},
        None,
    )
    assert (finish["delta"], finish["finish_reason"]) == ({}, "stop")


async def test_a_stream_opening_with_a_tool_call_reads_as_openais_in_the_sdk(
    providers: Providers,
) -> None:
    call = ScriptedCall("toolu_1", "lookup", ['{"greeting"', ': "x"}'])
    providers.anthropic.script(checked(Reply(chunks=anthropic_tool_stream([call]))))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": SCHEMA}}]

    chunks, done = await raw_stream(
        providers, model=CLAUDE_LOOSE, messages=asked(), tools=tools,
        stream_options={"include_usage": True},
    )  # fmt: skip

    assert done
    _shape_checked(chunks, include_usage=True)
    opening, first = (c["choices"][0]["delta"] for c in chunks[:2])
    assert opening["role"] == "assistant"
    assert opening.get("content") is None  # a tool call first: no empty text
    assert "role" not in first
    assert first["tool_calls"][0]["function"]["name"] == "lookup"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"

    providers.anthropic.script(checked(Reply(chunks=anthropic_tool_stream([call]))))
    async with providers.sdk.chat.completions.stream(
        model=CLAUDE_LOOSE,
        messages=asked(),
        tools=tools,  # type: ignore[arg-type]
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.tool_calls is not None
    assert final.choices[0].message.tool_calls[0].function.arguments == '{"greeting": "x"}'


def _thinking_first(thought: str, text: str) -> list[bytes]:
    message = {
        "id": "msg_think",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-test",
        "stop_reason": None,
        "usage": {"input_tokens": 11, "output_tokens": 1},
    }
    thinking = {"type": "thinking", "thinking": "", "signature": ""}
    return [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": thinking}),
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": thought},
            }
        ),
        sse({"type": "content_block_stop", "index": 0}),
        sse(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "text", "text": ""},
            }
        ),
        sse(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "text_delta", "text": text},
            }
        ),
        sse({"type": "content_block_stop", "index": 1}),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 4},
            }
        ),
        sse({"type": "message_stop"}),
    ]


async def test_a_stream_opening_with_reasoning_keeps_the_role_and_then_the_text(
    providers: Providers,
) -> None:
    providers.anthropic.script(checked(Reply(chunks=_thinking_first("Hmm.", JSON_TEXT))))

    chunks, done = await raw_stream(
        providers, model=CLAUDE_STRICT, messages=asked(), response_format=STRICT_FORMAT,
        reasoning_effort="low",
    )  # fmt: skip

    assert done
    _shape_checked(chunks, include_usage=False)
    opening, first = (c["choices"][0]["delta"] for c in chunks[:2])
    assert opening == {"role": "assistant", "content": ""}
    assert first == {"reasoning_content": "Hmm."}
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == JSON_TEXT


async def test_an_error_after_the_first_delta_is_an_error_chunk_without_done(
    providers: Providers,
) -> None:
    pieces = anthropic_stream(["Hel"], stop=False)[:-1]  # the first delta, then an error
    providers.anthropic.script(checked(Reply(chunks=[*pieces[:4], anthropic_error_event()])))

    chunks, done = await raw_stream(providers, model=CLAUDE_LOOSE, messages=asked())

    assert not done
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hel"}
    assert "error" in chunks[-1]
    assert all("error" not in c for c in chunks[:-1])

    providers.anthropic.script(checked(Reply(chunks=[*pieces[:4], anthropic_error_event()])))
    with pytest.raises(openai.APIError, match=r"(?i)overload|provider"):
        async for _ in await providers.sdk.chat.completions.create(
            model=CLAUDE_LOOSE, messages=asked(), stream=True
        ):
            pass


async def test_a_cached_reply_streams_the_same_chunks_as_the_first(providers: Providers) -> None:
    messages = asked("Cache me.")
    body = {
        "model": CLAUDE_LOOSE,
        "messages": messages,
        "temperature": 0,
        "stream_options": {"include_usage": True},
    }

    first, first_done = await raw_stream(providers, **body)
    second, second_done = await raw_stream(providers, **body)

    assert (first_done, second_done) == (True, True)
    assert len(providers.anthropic.requests) == 1  # the second from the cache
    for chunks in (first, second):
        _shape_checked(chunks, include_usage=True)

    def content(chunks: list[Any]) -> list[Any]:
        return [(ch["delta"], ch["finish_reason"]) for c in chunks for ch in c["choices"]]

    assert content(first) == content(second)


async def test_a_client_leaving_a_coalesced_stream_closes_the_provider_request(
    providers: Providers,
) -> None:
    gate = asyncio.Event()
    providers.anthropic.script(checked(Reply(chunks=anthropic_stream(), gate=gate, gate_after=4)))
    url = f"{providers.sdk.base_url}".rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {providers.sdk.api_key}"}
    body = {"model": CLAUDE_LOOSE, "messages": asked(), "stream": True}
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", url, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                first = json.loads(line.removeprefix("data: "))
                break
    assert first["choices"][0]["delta"]["role"] == "assistant"

    await asyncio.wait_for(providers.anthropic.disconnected.wait(), 10)
    gate.set()


# --- 3. the stream attach grace ----------------------------------------------------------------
async def _status(chat: Chat, session_id: str, headers: dict[str, str] | None = None) -> int:
    url = f"/api/chat/stream?sessionId={session_id}"
    async with chat.client.stream("GET", url, headers=headers or {}) as response:
        return response.status_code


async def _disable(chat: Chat, user_id: str) -> None:
    admin = await chat.world.create_admin()
    disabled = await chat.client.patch(
        f"/api/admin/users/{user_id}", json={"disabled": True}, headers=admin
    )
    assert disabled.status_code == 200, disabled.text


async def test_a_disabled_users_session_id_is_refused_once_the_grace_is_over(chat: Chat) -> None:
    ada = await chat.world.register("ada")
    started = await chat.start(ada["auth"], model="dev/echo", message=f"hi {uuid.uuid4()}")
    assert await _status(chat, started["sessionId"]) == 200  # the EventSource just after

    await _disable(chat, ada["user"]["id"])
    await asyncio.sleep(START_READ_GRACE.total_seconds() + 0.3)

    assert await _status(chat, started["sessionId"]) == 404


async def test_within_the_grace_another_user_with_the_session_id_is_refused(chat: Chat) -> None:
    ada, bob = await chat.world.register("ada"), await chat.world.register("bob")
    started = await chat.start(ada["auth"], model="dev/echo", message=f"hi {uuid.uuid4()}")

    assert await _status(chat, started["sessionId"], bob["auth"]) == 404
    assert await _status(chat, started["sessionId"], ada["auth"]) == 200


async def test_within_the_grace_a_member_removed_from_a_shared_project_is_refused(
    chat: Chat,
) -> None:
    ada, bob = await chat.world.register("ada"), await chat.world.register("bob")
    project_id, bob_id = await team_project(chat, ada, bob, "editor")
    started = await chat.start(
        bob["auth"], model="dev/echo", message=f"hi {uuid.uuid4()}", projectId=project_id
    )
    removed = await chat.client.delete(
        f"/api/projects/{project_id}/members/{bob_id}", headers=ada["auth"]
    )
    assert removed.status_code == 204, removed.text

    assert await _status(chat, started["sessionId"]) == 404  # by its id alone, at once


async def test_within_the_grace_a_disabled_users_token_is_refused(chat: Chat) -> None:
    ada = await chat.world.register("ada")
    started = await chat.start(ada["auth"], model="dev/echo", message=f"hi {uuid.uuid4()}")
    await _disable(chat, ada["user"]["id"])

    assert await _status(chat, started["sessionId"], ada["auth"]) == 401
