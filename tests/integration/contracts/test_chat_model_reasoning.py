"""Reasoning models through the adapters, against loopback providers speaking their wire
formats: the effort asked for goes out in each provider's terms, and the model's streamed
thinking comes back as ``StreamReasoning``, apart from (and before) the answer's text."""

from __future__ import annotations

import dataclasses

import httpx
import msgspec
import pytest

from tests.integration.contracts.test_chat_model import FAST, REQUEST, collect, text_of
from tests.support.fake_providers import (
    API_KEY,
    COMPLETION_TOKENS,
    DELTAS,
    PROMPT_TOKENS,
    FakeProviderServer,
    Reply,
    anthropic_default,
    anthropic_stream,
    openai_default,
    openai_stream,
)
from tests.support.fake_reasoning import (
    THOUGHTS,
    anthropic_thinking_stream,
    openai_reasoning_stream,
)
from whalli.adapters.ai.anthropic import DEFAULT_MAX_TOKENS, AnthropicChatModel
from whalli.adapters.ai.dev_echo import DevEchoChatModel
from whalli.adapters.ai.openai import OpenAIChatModel
from whalli.adapters.outbound_http import new_http_client
from whalli.domain.model.chats import (
    GenerationParams,
    MessageRole,
    PromptMessage,
    ReasoningEffort,
    TokenUsage,
)
from whalli.domain.model.errors import InvalidInput, ProviderError
from whalli.domain.model.response_format import FormatType, JsonSchema, ResponseFormat
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamReasoning,
)


@pytest.fixture
async def http() -> httpx.AsyncClient:
    return new_http_client(timeout=5.0, max_connections=10, max_keepalive_connections=5)


def kinds(events: list[StreamEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_an_openai_compatible_servers_reasoning_streams_before_the_text(
    http: httpx.AsyncClient, field: str
) -> None:
    async with FakeProviderServer(openai_default()) as server:
        server.script(Reply(chunks=openai_reasoning_stream(field=field)))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = await collect(model.stream(REQUEST))
    await http.aclose()

    assert [e.text for e in events if isinstance(e, StreamReasoning)] == list(THOUGHTS)
    assert text_of(events) == "".join(DELTAS)
    assert kinds(events) == ["StreamReasoning"] * len(THOUGHTS) + ["StreamDelta"] * len(DELTAS) + [
        "StreamEnd"
    ]
    assert isinstance(events[-1], StreamEnd)
    assert all(not isinstance(e, StreamDelta) or e.text for e in events)


@pytest.mark.parametrize("provider", ["openai", "xai", "openai-compatible"])
async def test_a_reasoning_effort_is_sent_as_reasoning_effort(
    http: httpx.AsyncClient, provider: str
) -> None:
    request = CompletionRequest(
        model="o4-mini", messages=REQUEST.messages,
        params=GenerationParams(reasoning_effort=ReasoningEffort.HIGH),
    )  # fmt: skip
    async with FakeProviderServer(openai_default()) as server:
        model = OpenAIChatModel(
            http, base_url=server.url, api_key=API_KEY, policy=FAST,
            provider=provider,  # type: ignore[arg-type]
        )  # fmt: skip
        await collect(model.stream(request))
        await collect(model.stream(REQUEST))
    await http.aclose()

    asked, plain = (r.body for r in server.requests)
    assert asked["reasoning_effort"] == "high"
    assert "reasoning_effort" not in plain


@pytest.mark.parametrize("redacted", [False, True], ids=["thinking", "with a redacted block"])
async def test_claudes_thinking_streams_before_its_text(
    http: httpx.AsyncClient, redacted: bool
) -> None:
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=anthropic_thinking_stream(redacted=redacted)))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = await collect(model.stream(REQUEST))
    await http.aclose()

    assert [e.text for e in events if isinstance(e, StreamReasoning)] == list(THOUGHTS)
    assert text_of(events) == "".join(DELTAS)
    assert kinds(events)[: len(THOUGHTS) + 1] == ["StreamReasoning"] * len(THOUGHTS) + [
        "StreamDelta"
    ]
    assert events[-1] == StreamEnd(
        finish_reason="end_turn",
        usage=TokenUsage(prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS),
    )


@pytest.mark.parametrize(
    ("effort", "asked", "cap", "budget", "max_tokens"),
    [
        (ReasoningEffort.MINIMAL, None, None, 1_024, 1_024 + DEFAULT_MAX_TOKENS),
        (ReasoningEffort.HIGH, 500, None, 24_576, 24_576 + 500),
        (ReasoningEffort.HIGH, 500, 64_000, 24_576, 24_576 + 500),  # under the cap: as asked
        # the model's output cap holds: the budget stays, the answer gets the rest
        (ReasoningEffort.HIGH, 60_000, 64_000, 24_576, 64_000),
        # a small cap: at most half of it thinking
        (ReasoningEffort.HIGH, 30_000, 32_000, 16_000, 32_000),
        (ReasoningEffort.MEDIUM, 8_000, 8_192, 4_096, 8_192),
    ],
)
async def test_an_effort_asks_claude_for_extended_thinking_within_its_budget(
    http: httpx.AsyncClient,
    effort: ReasoningEffort,
    asked: int | None,
    cap: int | None,
    budget: int,
    max_tokens: int,
) -> None:
    params = GenerationParams(reasoning_effort=effort, max_tokens=asked, temperature=0.2, top_p=0.5)
    request = CompletionRequest(
        model="claude-test", messages=REQUEST.messages, params=params, max_output_tokens=cap
    )
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=anthropic_thinking_stream()))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        await collect(model.stream(request))
    await http.aclose()

    sent = server.requests[0].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert sent["max_tokens"] == max_tokens
    assert "temperature" not in sent
    assert "top_p" not in sent


@pytest.mark.parametrize(
    ("effort", "asked", "cap", "sent_effort", "max_tokens"),
    [
        (ReasoningEffort.MINIMAL, None, None, "low", 2_048 + DEFAULT_MAX_TOKENS),  # as low
        (ReasoningEffort.LOW, 500, None, "low", 2_048 + 500),
        (ReasoningEffort.MEDIUM, 500, 64_000, "medium", 8_192 + 500),
        (ReasoningEffort.HIGH, 60_000, 64_000, "high", 64_000),  # the cap holds
    ],
)
async def test_an_effort_asks_an_adaptive_claude_for_that_effort_and_no_budget(
    http: httpx.AsyncClient,
    effort: ReasoningEffort,
    asked: int | None,
    cap: int | None,
    sent_effort: str,
    max_tokens: int,
) -> None:
    """Claude Opus and Sonnet 4.6 (a budget deprecated) and later (a budget refused) decide
    how much to think; the room a budget would have had is left in ``max_tokens``."""
    params = GenerationParams(reasoning_effort=effort, max_tokens=asked, temperature=0.2)
    request = CompletionRequest(
        model="claude-test", messages=REQUEST.messages, params=params, max_output_tokens=cap,
        adaptive_thinking=True,
    )  # fmt: skip
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=anthropic_thinking_stream()))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = await collect(model.stream(request))
    await http.aclose()

    sent = server.requests[0].body
    assert sent["thinking"] == {"type": "adaptive"}
    assert sent["output_config"] == {"effort": sent_effort}
    assert sent["max_tokens"] == max_tokens
    assert "temperature" not in sent
    assert [e.text for e in events if isinstance(e, StreamReasoning)] == list(THOUGHTS)


async def test_an_adaptive_claude_asked_a_strict_format_gets_both_in_its_output_config(
    http: httpx.AsyncClient,
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = CompletionRequest(
        model="claude-test", messages=REQUEST.messages,
        params=GenerationParams(reasoning_effort=ReasoningEffort.HIGH),
        response_format=ResponseFormat(
            type=FormatType.JSON_SCHEMA,
            json_schema=JsonSchema(name="a", schema=schema, strict=True),
        ),
        strict_outputs=True, adaptive_thinking=True,
    )  # fmt: skip
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        await collect(model.stream(request))
    await http.aclose()

    sent = server.requests[0].body
    closed = {**schema, "additionalProperties": False}  # as Claude enforces it
    assert sent["output_config"] == {
        "format": {"type": "json_schema", "schema": closed}, "effort": "high"
    }  # fmt: skip
    assert sent["thinking"] == {"type": "adaptive"}


PREFILLED = (*REQUEST.messages, PromptMessage(role=MessageRole.ASSISTANT, content="Once"))


@pytest.mark.parametrize("adaptive", [False, True])
async def test_a_prefilled_reply_goes_without_thinking_and_an_adaptive_claude_keeps_its_effort(
    http: httpx.AsyncClient, adaptive: bool
) -> None:
    """A conversation ending with the reply's start (a prefill): thinking would have to come
    first in it, so it is left out; an adaptive model's effort still governs the text."""
    request = CompletionRequest(
        model="claude-test", messages=PREFILLED, adaptive_thinking=adaptive,
        params=GenerationParams(reasoning_effort=ReasoningEffort.MEDIUM, temperature=0.3),
    )  # fmt: skip
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        await collect(model.stream(request))
    await http.aclose()

    sent = server.requests[0].body
    assert "thinking" not in sent
    last = {"type": "text", "text": "Once", "cache_control": {"type": "ephemeral"}}
    assert sent["messages"][-1] == {"role": "assistant", "content": [last]}
    assert sent.get("output_config") == ({"effort": "medium"} if adaptive else None)
    assert sent["temperature"] == 0.3  # no thinking: the caller's sampler goes


async def test_a_model_that_takes_no_prefill_is_not_sent_one(http: httpx.AsyncClient) -> None:
    request = CompletionRequest(model="claude-test", messages=PREFILLED, prefill=False)
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        with pytest.raises(InvalidInput, match="ends with an assistant message") as refused:
            model.stream(request)
    await http.aclose()

    assert refused.value.details["field"] == "messages"
    assert server.requests == []


async def test_claude_is_not_asked_to_think_while_a_tool_call_is_forced(
    http: httpx.AsyncClient,
) -> None:
    request = CompletionRequest(
        model="claude-test", messages=REQUEST.messages,
        params=GenerationParams(reasoning_effort=ReasoningEffort.LOW),
        response_format=ResponseFormat(type=FormatType.JSON_OBJECT),
    )  # fmt: skip
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        with pytest.raises(InvalidInput, match="cannot think") as refused:
            await collect(model.stream(request))
    await http.aclose()

    assert refused.value.details["field"] == "reasoning_effort"
    assert server.requests == []


async def test_dev_echo_thinks_aloud_only_when_asked() -> None:
    asked = CompletionRequest(
        model="echo", messages=REQUEST.messages,
        params=GenerationParams(reasoning_effort=ReasoningEffort.LOW),
    )  # fmt: skip
    thinking = await collect(DevEchoChatModel().stream(asked))
    plain = await collect(DevEchoChatModel().stream(REQUEST))

    thought = "".join(e.text for e in thinking if isinstance(e, StreamReasoning))
    assert thought == "Thinking (low effort): the user wrote 5 words; I repeat them."
    assert text_of(thinking) == text_of(plain) == "Say hello to the  world"
    assert not any(isinstance(e, StreamReasoning) for e in plain)
    end = thinking[-1]
    assert isinstance(end, StreamEnd)
    assert end.usage.completion_tokens == 5 + len(thought.split())


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_reasoning_models_first_token_may_come_after_a_long_silence(
    http: httpx.AsyncClient, provider: str
) -> None:
    policy = dataclasses.replace(
        FAST, max_attempts=1, first_token_timeout=0.2, reasoning_first_token_timeout=3.0
    )
    thinking = msgspec.structs.replace(REQUEST, reasons=True)
    default, chunks = (
        (openai_default(), openai_stream())
        if provider == "openai"
        else (anthropic_default(), anthropic_stream())
    )
    async with FakeProviderServer(default) as server:
        model: ChatModel = (
            OpenAIChatModel(http, base_url=server.url, api_key=API_KEY, policy=policy)
            if provider == "openai"
            else AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=policy)
        )
        server.script(Reply(chunks=chunks, first_delay=0.6), Reply(chunks=chunks, first_delay=0.6))
        answered = await collect(model.stream(thinking))
        with pytest.raises(ProviderError, match="waiting for the first token") as timed_out:
            await collect(model.stream(REQUEST))
    await http.aclose()

    assert text_of(answered) == "".join(DELTAS)
    assert timed_out.value.details["kind"] == "timeout"
