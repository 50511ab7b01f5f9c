"""Tool calling end to end with the official ``openai`` SDK: SDK → /v1 → Whalli's real app and
container (Postgres, Redis) → its OpenAI or Anthropic adapter → a loopback provider speaking
that provider's documented tool-call stream. A whole round trip each time: a request with
tools, the call (streamed and not), the assistant turn with its calls and the tool's answer
sent back, the final text; and what reached the provider."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from tests.integration.http.test_identity_end_to_end import _settings
from tests.integration.http.test_openai_sdk_end_to_end import _api_key
from tests.support.fake_prompt_cache import unmarked
from tests.support.fake_providers import (
    API_KEY,
    DELTAS,
    FakeProviderServer,
    Reply,
    ScriptedCall,
    anthropic_default,
    anthropic_tool_stream,
    openai_default,
    openai_tool_stream,
)
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import Container, build_container
from whalli.entrypoints.http.asgi import build_app

TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city now.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "local_time", "parameters": {"type": "object"}}},
]
PARIS = ScriptedCall("call_paris", "get_weather", ['{"ci', 'ty":', ' "Pa', 'ris"}'])
TIME = ScriptedCall("call_time", "local_time", ["{}"])
GPT, CLAUDE = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"


@dataclass
class Providers:
    openai: FakeProviderServer
    anthropic: FakeProviderServer
    sdk: openai.AsyncOpenAI
    container: Container
    user_id: uuid.UUID


@pytest.fixture
async def providers(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Providers]:
    async with (
        FakeProviderServer(openai_default()) as openai_fake,
        FakeProviderServer(anthropic_default()) as anthropic_fake,
    ):
        settings = _settings(
            stack_urls, unique,
            WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=openai_fake.url,
            WHALLI_ANTHROPIC_API_KEY=API_KEY, WHALLI_ANTHROPIC_BASE_URL=anthropic_fake.url,
        )  # fmt: skip
        container = build_container(settings)
        async with live_server(build_app(settings, container)) as client:
            secret, user_id = await _api_key(client)
            base_url = f"{client.base_url}".rstrip("/") + "/v1"
            sdk = openai.AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0)
            async with sdk:
                yield Providers(openai_fake, anthropic_fake, sdk, container, user_id)


def asked() -> list[ChatCompletionMessageParam]:
    # unique: the shared Redis may hold the cached replies of other runs
    return [{"role": "user", "content": f"Weather and time in Paris? {uuid.uuid4()}"}]


def replayed(message: Any) -> ChatCompletionMessageParam:
    """The assistant turn as an agent sends it back: the SDK's message, as a dict."""
    return message.model_dump(exclude_none=True)  # type: ignore[no-any-return]


async def final_answer(
    providers: Providers, model: str, messages: list[ChatCompletionMessageParam]
) -> str | None:
    answers: list[ChatCompletionMessageParam] = [
        {"role": "tool", "tool_call_id": "call_paris", "content": "18°C, sunny"},
        {"role": "tool", "tool_call_id": "call_time", "content": "12:00"},
    ]
    final = await providers.sdk.chat.completions.create(
        model=model, messages=[*messages, *answers], tools=TOOLS
    )
    assert final.choices[0].finish_reason == "stop"
    assert final.model == model
    return final.choices[0].message.content


# --- OpenAI behind /v1 --------------------------------------------------------------------------
async def test_a_tool_round_trip_without_streaming_through_openai(providers: Providers) -> None:
    providers.openai.script(Reply(chunks=openai_tool_stream([PARIS, TIME])))
    messages = asked()

    completion = await providers.sdk.chat.completions.create(
        model=GPT, messages=messages, tools=TOOLS, tool_choice="auto", parallel_tool_calls=True
    )

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.type, c.function.name) for c in calls] == [
        ("call_paris", "function", "get_weather"),
        ("call_time", "function", "local_time"),
    ]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    sent = providers.openai.requests[-1].body
    assert sent["tools"] == TOOLS
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("auto", True)

    answer = await final_answer(providers, GPT, [*messages, replayed(choice.message)])

    assert answer == "".join(DELTAS)
    back = providers.openai.requests[-1].body["messages"]
    assert back[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_paris", "type": "function",
             "function": {"name": "get_weather", "arguments": PARIS.arguments}},
            {"id": "call_time", "type": "function",
             "function": {"name": "local_time", "arguments": "{}"}},
        ],
    }  # fmt: skip
    assert back[2:] == [
        {"role": "tool", "tool_call_id": "call_paris", "content": "18°C, sunny"},
        {"role": "tool", "tool_call_id": "call_time", "content": "12:00"},
    ]


async def test_a_tool_round_trip_streamed_through_openai_with_the_sdks_stream_helper(
    providers: Providers,
) -> None:
    providers.openai.script(Reply(chunks=openai_tool_stream([PARIS, TIME], ["Let me check."])))
    messages = asked()

    stream = await providers.sdk.chat.completions.create(
        model=GPT, messages=messages, tools=TOOLS, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [chunk async for chunk in stream]

    pieces = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    firsts = [p for p in pieces if p.id is not None]
    assert [(p.index, p.id, p.type, p.function and p.function.name) for p in firsts] == [
        (0, "call_paris", "function", "get_weather"),
        (1, "call_time", "function", "local_time"),
    ]
    paris = "".join(p.function.arguments or "" for p in pieces if p.index == 0 and p.function)
    assert paris == PARIS.arguments
    assert len([p for p in pieces if p.index == 0]) == 1 + len(PARIS.pieces)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None

    # the SDK's own accumulator (client.chat.completions.stream) puts the calls together
    providers.openai.script(Reply(chunks=openai_tool_stream([PARIS, TIME], ["Let me check."])))
    async with providers.sdk.chat.completions.stream(
        model=GPT, messages=asked(), tools=TOOLS
    ) as helper:
        async for _ in helper:
            pass
        final = await helper.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Let me check."
    assert [(c.id, c.function.arguments) for c in message.tool_calls or []] == [
        ("call_paris", PARIS.arguments),
        ("call_time", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"

    answer = await final_answer(providers, GPT, [*messages, replayed(message)])
    assert answer == "".join(DELTAS)


async def test_an_identical_tool_request_at_temperature_0_is_answered_from_the_cache(
    providers: Providers,
) -> None:
    providers.openai.script(Reply(chunks=openai_tool_stream([PARIS])))
    messages = asked()

    async def ask() -> Any:
        return await providers.sdk.chat.completions.create(
            model=GPT, messages=messages, tools=TOOLS, temperature=0
        )

    first, second = await ask(), await ask()

    assert len(providers.openai.requests) == 1
    assert second.choices[0].message.tool_calls == first.choices[0].message.tool_calls
    assert second.choices[0].finish_reason == "tool_calls"
    uow = await resolved(providers.container.adapters.unit_of_work())
    async with uow:
        since = providers.container.adapters.clock().now() - timedelta(hours=1)
        totals = await uow.usage.totals(providers.user_id, since=since, model=GPT)
    assert totals.requests == 2


# --- Anthropic behind /v1 -----------------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_round_trip_through_anthropic(providers: Providers, stream: bool) -> None:
    providers.anthropic.script(Reply(chunks=anthropic_tool_stream([PARIS, TIME], ["Checking."])))
    messages = asked()

    if stream:
        async with providers.sdk.chat.completions.stream(
            model=CLAUDE, messages=messages, tools=TOOLS, tool_choice="required",
            parallel_tool_calls=False,
        ) as helper:  # fmt: skip
            async for _ in helper:
                pass
            completion = await helper.get_final_completion()
    else:
        completion = await providers.sdk.chat.completions.create(
            model=CLAUDE, messages=messages, tools=TOOLS, tool_choice="required",
            parallel_tool_calls=False,
        )  # fmt: skip

    [choice] = completion.choices
    assert completion.model == CLAUDE
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    assert [
        (c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []
    ] == [
        ("call_paris", "get_weather", PARIS.arguments),
        ("call_time", "local_time", "{}"),
    ]
    sent = providers.anthropic.requests[-1].body
    assert sent["tools"][0] == {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "input_schema": TOOLS[0]["function"]["parameters"],  # type: ignore[typeddict-item]
    }
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    answer = await final_answer(providers, CLAUDE, [*messages, replayed(choice.message)])

    assert answer == "".join(DELTAS)
    back = unmarked(providers.anthropic.requests[-1].body)["messages"]
    assert back[1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_paris", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_time", "name": "local_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_paris", "content": "18°C, sunny"},
            {"type": "tool_result", "tool_use_id": "call_time", "content": "12:00"},
        ]},
    ]  # fmt: skip
    assert providers.openai.requests == []  # Claude answered, not its fallback


async def test_unparseable_arguments_for_claude_are_a_400_and_reach_no_provider(
    providers: Providers,
) -> None:
    bad_turn: ChatCompletionMessageParam = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{not json"}}
        ],
    }  # fmt: skip
    messages = [*asked(), bad_turn, {"role": "tool", "tool_call_id": "call_1", "content": "?"}]

    with pytest.raises(openai.BadRequestError, match="must be a JSON object") as raised:
        await providers.sdk.chat.completions.create(model=CLAUDE, messages=messages, tools=TOOLS)

    assert isinstance(raised.value.body, dict)
    assert raised.value.body["param"] == "messages[1].tool_calls[0].function.arguments"
    assert providers.anthropic.requests == []
    assert providers.openai.requests == []
