"""Structured outputs end to end with the official ``openai`` SDK: ``response_format`` (JSON mode,
a JSON Schema, the SDK's ``parse`` with a Pydantic model) → /v1 → Whalli's real app and
container (Postgres, Redis) → its OpenAI adapter (the format passed on as sent) or its Anthropic
adapter (a forced tool whose input is the reply) → a loopback provider speaking that provider's
documented stream; what reached the provider, what came back, the 400s and the cache."""

from __future__ import annotations

import json
import uuid
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from tests.integration.http.test_v1_tools import CLAUDE, GPT, Providers, providers
from tests.support.access import changed
from tests.support.fake_providers import JSON_PIECES, Reply, ScriptedCall, anthropic_tool_stream
from tests.support.resolve import resolved
from whalli.domain.model.users import Plan

__all__ = ["providers"]  # the fixture, shared with the tool tests

JSON_TEXT = "".join(JSON_PIECES)
SCHEMA = {
    "type": "object",
    "properties": {"greeting": {"type": "string"}},
    "required": ["greeting"],
    "additionalProperties": False,
}
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "greeting",
        "description": "A greeting.",
        "schema": SCHEMA,
        "strict": True,
    },
}
FORCED = {"type": "tool", "name": "json_response", "disable_parallel_tool_use": True}


class Greeting(BaseModel):
    greeting: str


def asked() -> list[ChatCompletionMessageParam]:
    # unique: the shared Redis may hold the cached replies of other runs
    return [{"role": "user", "content": f"Greet me, in JSON. {uuid.uuid4()}"}]


async def ask(
    providers: Providers, model: str, response_format: Any, *, stream: bool, **extra: Any
) -> tuple[str | None, str | None, bool]:
    """The reply's content, its finish reason and whether any tool call came back."""
    sdk = providers.sdk.chat.completions
    if not stream:
        completion = await sdk.create(
            model=model, messages=asked(), response_format=response_format, **extra
        )
        choice = completion.choices[0]
        return choice.message.content, choice.finish_reason, bool(choice.message.tool_calls)
    chunks = await sdk.create(
        model=model, messages=asked(), response_format=response_format, stream=True, **extra
    )
    texts, reasons, calls = [], [], False
    async for chunk in chunks:
        for choice in chunk.choices:
            texts.append(choice.delta.content or "")
            calls |= bool(choice.delta.tool_calls)
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    return "".join(texts), reasons[-1] if reasons else None, calls


# --- OpenAI-compatible providers: the format as sent ----------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("response_format", [{"type": "json_object"}, JSON_SCHEMA])
async def test_openai_gets_the_response_format_as_sent_and_its_json_comes_back(
    providers: Providers, response_format: dict[str, Any], stream: bool
) -> None:
    content, finish_reason, called = await ask(providers, GPT, response_format, stream=stream)

    assert content == JSON_TEXT
    assert json.loads(content) == {"greeting": "Hello, world!"}
    assert (finish_reason, called) == ("stop", False)
    [sent] = providers.openai.requests
    assert sent.body["response_format"] == response_format
    assert "tools" not in sent.body


async def test_a_text_format_is_no_format_for_the_provider(providers: Providers) -> None:
    content, _, _ = await ask(providers, GPT, {"type": "text"}, stream=False)

    assert content == "Hello, world!"
    assert "response_format" not in providers.openai.requests[-1].body


# --- Anthropic: a forced tool whose input is the reply ------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("response_format", "tool"),
    [
        (
            {"type": "json_object"},
            {
                "name": "json_response",
                "description": "Give your answer with this tool: its input is the reply, as JSON.",
                "input_schema": {"type": "object", "additionalProperties": True, "properties": {}},
            },
        ),
        (
            JSON_SCHEMA,
            {"name": "json_response", "description": "A greeting.", "input_schema": SCHEMA},
        ),
    ],
    ids=["json_object", "json_schema"],
)
async def test_anthropic_is_forced_to_answer_with_a_tool_whose_input_comes_back_as_the_text(
    providers: Providers, response_format: dict[str, Any], tool: dict[str, Any], stream: bool
) -> None:
    content, finish_reason, called = await ask(providers, CLAUDE, response_format, stream=stream)

    assert content == JSON_TEXT
    assert (finish_reason, called) == ("stop", False)
    [sent] = providers.anthropic.requests
    assert sent.body["tools"] == [tool]
    assert sent.body["tool_choice"] == FORCED
    assert providers.openai.requests == []  # Claude answered, not its fallback


async def test_text_claude_writes_beside_the_forced_tool_is_not_part_of_the_json(
    providers: Providers,
) -> None:
    call = ScriptedCall("toolu_1", "json_response", JSON_PIECES)
    providers.anthropic.script(Reply(chunks=anthropic_tool_stream([call], ["Here it is: "])))

    content, finish_reason, called = await ask(providers, CLAUDE, JSON_SCHEMA, stream=True)

    assert (content, finish_reason, called) == (JSON_TEXT, "stop", False)


async def test_a_forced_tool_cut_by_max_tokens_ends_with_length_and_the_json_so_far(
    providers: Providers,
) -> None:
    call = ScriptedCall("toolu_1", "json_response", ['{"greet'])
    pieces = [
        piece.replace(b'"stop_reason": "tool_use"', b'"stop_reason": "max_tokens"')
        for piece in anthropic_tool_stream([call])
    ]
    assert pieces != anthropic_tool_stream([call])
    providers.anthropic.script(Reply(chunks=pieces))

    content, finish_reason, called = await ask(providers, CLAUDE, JSON_SCHEMA, stream=False)

    assert (content, finish_reason, called) == ('{"greet', "length", False)


# --- the SDK's parse helpers, with a Pydantic model ---------------------------------------------
@pytest.mark.parametrize("model", [GPT, CLAUDE])
async def test_the_sdks_parse_returns_the_pydantic_object(providers: Providers, model: str) -> None:
    completion = await providers.sdk.chat.completions.parse(
        model=model, messages=asked(), response_format=Greeting
    )

    assert completion.choices[0].message.parsed == Greeting(greeting="Hello, world!")
    if model == GPT:
        sent = providers.openai.requests[-1].body["response_format"]
        assert (sent["type"], sent["json_schema"]["name"]) == ("json_schema", "Greeting")
        assert sent["json_schema"]["strict"] is True
        schema = sent["json_schema"]["schema"]
    else:
        sent = providers.anthropic.requests[-1].body
        assert sent["tool_choice"] == FORCED
        [tool] = sent["tools"]
        schema = tool["input_schema"]
    assert schema["properties"]["greeting"]["type"] == "string"
    assert schema["required"] == ["greeting"]


@pytest.mark.parametrize("model", [GPT, CLAUDE])
async def test_the_sdks_stream_helper_parses_the_streamed_json(
    providers: Providers, model: str
) -> None:
    async with providers.sdk.chat.completions.stream(
        model=model, messages=asked(), response_format=Greeting
    ) as helper:
        async for _ in helper:
            pass
        final = await helper.get_final_completion()

    assert final.choices[0].message.parsed == Greeting(greeting="Hello, world!")
    assert final.choices[0].finish_reason == "stop"


# --- refusals: OpenAI's error shape, naming the param, before any provider is called ------------
BAD_FORMATS: dict[str, tuple[str, Any, dict[str, Any], str]] = {
    "unknown_type": (GPT, {"type": "xml"}, {}, "response_format.type"),
    "json_schema_missing": (GPT, {"type": "json_schema"}, {}, "response_format.json_schema"),
    "name_missing": (
        GPT, {"type": "json_schema", "json_schema": {"schema": SCHEMA}}, {},
        "response_format.json_schema.name",
    ),
    "bad_name": (
        CLAUDE, {"type": "json_schema", "json_schema": {"name": "a greeting", "schema": SCHEMA}},
        {}, "response_format.json_schema.name",
    ),
    "schema_not_an_object": (
        GPT, {"type": "json_schema", "json_schema": {"name": "g", "schema": [SCHEMA]}}, {},
        "response_format.json_schema.schema",
    ),
    "dev_echo": ("dev/echo", {"type": "json_object"}, {}, "response_format"),
    "claude_with_a_tool_named_as_its_format_tool": (
        CLAUDE, {"type": "json_object"},
        {"tools": [{"type": "function", "function": {"name": "json_response"}}]}, "tools",
    ),
    "claude_with_a_schema_not_of_an_object": (
        CLAUDE, {"type": "json_schema", "json_schema": {"name": "g", "schema": {"type": "array"}}},
        {}, "response_format.json_schema.schema",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_FORMATS.values()), ids=list(BAD_FORMATS))
@pytest.mark.parametrize("stream", [False, True])
async def test_a_bad_response_format_is_a_400_naming_the_param_and_reaches_no_provider(
    providers: Providers, case: tuple[str, Any, dict[str, Any], str], stream: bool
) -> None:
    model, response_format, extra, param = case

    with pytest.raises(openai.BadRequestError, match=param.replace(".", r"\.")) as raised:
        await ask(providers, model, response_format, stream=stream, **extra)

    body = raised.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["param"]) == ("invalid_request_error", param)
    assert body["code"] == "invalid_input"
    assert providers.openai.requests == []
    assert providers.anthropic.requests == []


# --- the cache: keyed by the format -------------------------------------------------------------
async def test_the_same_prompt_with_another_schema_is_another_cache_entry(
    providers: Providers,
) -> None:
    messages = asked()
    town = {"type": "object", "properties": {"town": {"type": "string"}}, "required": ["town"]}
    reordered = {"required": ["greeting"], "additionalProperties": False,
                 "properties": {"greeting": {"type": "string"}}, "type": "object"}  # fmt: skip

    async def ask_with(schema: dict[str, Any]) -> str | None:
        response_format: Any = {
            "type": "json_schema",
            "json_schema": {"name": "g", "schema": schema},
        }
        completion = await providers.sdk.chat.completions.create(
            model=GPT, messages=messages, response_format=response_format, temperature=0
        )
        return completion.choices[0].message.content

    answers = [await ask_with(SCHEMA), await ask_with(town), await ask_with(reordered)]

    sent = [r.body["response_format"]["json_schema"]["schema"] for r in providers.openai.requests]
    assert sent == [SCHEMA, town]  # the reordered schema is the first one: a cache hit
    assert answers == [JSON_TEXT] * 3
    without = await providers.sdk.chat.completions.create(
        model=GPT, messages=messages, temperature=0
    )
    assert without.choices[0].message.content == "Hello, world!"  # no format: its own entry
    assert len(providers.openai.requests) == 3


async def test_a_cached_json_reply_from_claude_comes_back_the_same(providers: Providers) -> None:
    messages = asked()

    async def ask_claude() -> tuple[str | None, str | None]:
        completion = await providers.sdk.chat.completions.create(
            model=CLAUDE, messages=messages, response_format={"type": "json_object"},
            temperature=0,
        )  # fmt: skip
        return completion.choices[0].message.content, completion.choices[0].finish_reason

    first, second = await ask_claude(), await ask_claude()

    assert first == second == (JSON_TEXT, "stop")
    assert len(providers.anthropic.requests) == 1


# --- a Claude model that enforces schemas: Claude's own structured outputs --------------------
CLAUDE_STRICT = "anthropic/claude-haiku-4-5"  # the shipped catalog's strict_outputs = true


@pytest.mark.parametrize("stream", [False, True])
async def test_a_strict_schema_asked_of_a_claude_that_enforces_schemas_is_its_own_format(
    providers: Providers, stream: bool
) -> None:
    content, finish_reason, called = await ask(providers, CLAUDE_STRICT, JSON_SCHEMA, stream=stream)

    assert (content, finish_reason, called) == (JSON_TEXT, "stop", False)
    [sent] = providers.anthropic.requests
    assert sent.body["model"] == "claude-haiku-4-5"
    assert sent.body["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "tool_choice" not in sent.body


async def test_the_sdks_parse_gets_claudes_own_format_and_may_think_first(
    providers: Providers,
) -> None:
    completion = await providers.sdk.chat.completions.parse(
        model=CLAUDE_STRICT, messages=asked(), response_format=Greeting, reasoning_effort="low"
    )

    assert completion.choices[0].message.parsed == Greeting(greeting="Hello, world!")
    sent = providers.anthropic.requests[-1].body
    assert sent["output_config"]["format"]["schema"]["required"] == ["greeting"]
    assert sent["thinking"]["type"] == "enabled"


async def test_a_strict_function_is_a_strict_tool_for_a_claude_that_enforces_schemas(
    providers: Providers,
) -> None:
    tool = {
        "type": "function",
        "function": {"name": "greet", "parameters": SCHEMA, "strict": True},
    }
    for model in (CLAUDE_STRICT, CLAUDE):
        await providers.sdk.chat.completions.create(
            model=model,
            messages=asked(),
            tools=[tool],  # type: ignore[list-item]
        )

    strict_sent, loose_sent = (r.body["tools"][0] for r in providers.anthropic.requests)
    assert strict_sent == {"name": "greet", "input_schema": SCHEMA, "strict": True}
    assert loose_sent == {"name": "greet", "input_schema": SCHEMA}  # not enforced: not sent


async def test_an_adaptive_claude_is_asked_for_an_effort_with_a_strict_format(
    providers: Providers,
) -> None:
    """Claude Sonnet 4.6 (the shipped catalog's adaptive_thinking, a pro model) thinks as much
    as it decides at the effort asked, and answers in Claude's own format."""
    uow = await resolved(providers.container.adapters.unit_of_work())
    async with uow:
        user = await uow.users.get(providers.user_id)
        user.plan = Plan.PRO
        await uow.users.update(user)
        await uow.commit()
    await changed(providers.container, providers.user_id)

    content, finish_reason, _ = await ask(
        providers, "anthropic/claude-sonnet-4-6", JSON_SCHEMA, stream=True,
        reasoning_effort="medium",
    )  # fmt: skip

    assert (content, finish_reason) == (JSON_TEXT, "stop")
    sent = providers.anthropic.requests[-1].body
    assert sent["thinking"] == {"type": "adaptive"}
    assert sent["output_config"] == {
        "format": {"type": "json_schema", "schema": SCHEMA}, "effort": "medium"
    }  # fmt: skip
    assert "budget_tokens" not in json.dumps(sent)
