"""The ChatModel contract, for the scripted fake, the dev echo model and the OpenAI and Anthropic
adapters against loopback providers (tests/support/fake_providers.py); then each adapter's
handling of provider failures: retries before the first token, errors after it, timeouts, cut
streams, and closing a stream early."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import msgspec
import pytest

from tests.support.fake_providers import (
    API_KEY,
    COMPLETION_TOKENS,
    DELTAS,
    PROMPT_TOKENS,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    anthropic_default,
    anthropic_error,
    anthropic_error_event,
    anthropic_stream,
    openai_chunk,
    openai_default,
    openai_error,
    openai_stream,
    split_pieces,
    sse,
)
from whalli.adapters.ai import StreamPolicy
from whalli.adapters.ai.anthropic import AnthropicChatModel
from whalli.adapters.ai.dev_echo import DevEchoChatModel
from whalli.adapters.ai.openai import OpenAIChatModel
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.adapters.outbound_http import new_http_client
from whalli.domain.model.chats import GenerationParams, MessageRole, TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    PromptMessage,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamReasoning,
    StreamStart,
)

USER_TEXT = "Say hello to the  world"
REQUEST = CompletionRequest(
    model="test-model",
    messages=(
        PromptMessage(role=MessageRole.SYSTEM, content="Be brief."),
        PromptMessage(role=MessageRole.USER, content=USER_TEXT),
    ),
)
FAST = StreamPolicy(
    max_attempts=3,
    backoff_base=0.01,
    backoff_max=0.05,
    retry_after_cap=5.0,
    connect_timeout=5.0,
    first_token_timeout=5.0,
    idle_timeout=5.0,
)
PROVIDER_USAGE = TokenUsage(prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS)


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    """The answer's events: all but the prompt's count at the start (``StreamStart``, which
    only Anthropic's stream has; ``collect_all`` keeps it, for its own tests)."""
    return [event for event in await collect_all(stream) if not isinstance(event, StreamStart)]


async def collect_all(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def read_into(received: list[StreamEvent], stream: AsyncIterator[StreamEvent]) -> None:
    async for event in stream:
        received.append(event)


def anthropic_stream_reply(deltas: list[str]) -> Callable[[RecordedRequest], Reply]:
    return lambda _: Reply(chunks=anthropic_stream(deltas))


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, StreamDelta))


@pytest.fixture(params=["whalli_client", "httpx_default"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Whalli's outbound client (httpx on its asyncio network backend), and httpx as it comes."""
    if request.param == "whalli_client":
        client = new_http_client(timeout=5.0, max_connections=100, max_keepalive_connections=20)
    else:
        client = httpx.AsyncClient()
    async with client:
        yield client


# --- the contract -------------------------------------------------------------------------------
@dataclass
class Harness:
    model: ChatModel
    text: str
    usage: TokenUsage


@pytest.fixture(params=["scripted", "dev_echo", "openai", "anthropic"])
async def harness(
    request: pytest.FixtureRequest, http: httpx.AsyncClient
) -> AsyncIterator[Harness]:
    if request.param == "scripted":
        usage = TokenUsage(prompt_tokens=3, completion_tokens=2)
        yield Harness(ScriptedChatModel(["Hello", ", world"], usage=usage), "Hello, world", usage)
    elif request.param == "dev_echo":
        usage = TokenUsage(prompt_tokens=7, completion_tokens=5)
        yield Harness(DevEchoChatModel(), USER_TEXT, usage)
    elif request.param == "openai":
        async with FakeProviderServer(openai_default()) as server:
            model = OpenAIChatModel(http, base_url=f"{server.url}/v1", api_key=API_KEY, policy=FAST)
            yield Harness(model, "".join(DELTAS), PROVIDER_USAGE)
    else:
        async with FakeProviderServer(anthropic_default()) as server:
            model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
            yield Harness(model, "".join(DELTAS), PROVIDER_USAGE)


async def test_a_stream_is_deltas_then_exactly_one_end_with_usage(harness: Harness) -> None:
    events = await collect(harness.model.stream(REQUEST))

    assert all(isinstance(e, StreamDelta) for e in events[:-1])
    assert len(events) > 1
    assert events[-1] == StreamEnd(finish_reason=events[-1].finish_reason, usage=harness.usage)
    assert text_of(events) == harness.text


async def test_a_stream_closed_after_its_first_delta_stops_quietly(harness: Harness) -> None:
    stream = harness.model.stream(REQUEST)
    first = await anext(stream)
    while isinstance(first, StreamStart):  # (the prompt's count, before the answer)
        first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]

    assert isinstance(first, StreamDelta)
    assert await anext(stream, None) is None


# --- the provider adapters against misbehaving providers ------------------------------------
@dataclass
class Upstream:
    wire: str
    server: FakeProviderServer
    http: httpx.AsyncClient
    sleeps: list[float] = field(default_factory=list)  # the backoff waits the adapter asked for

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def model(self, policy: StreamPolicy = FAST, api_key: str = API_KEY) -> ChatModel:
        if self.wire == "openai":
            return OpenAIChatModel(
                self.http,
                base_url=f"{self.server.url}/v1",
                api_key=api_key,
                policy=policy,
                sleep=self.sleep,
            )
        return AnthropicChatModel(
            self.http, base_url=self.server.url, api_key=api_key, policy=policy, sleep=self.sleep
        )

    def stream(self, deltas: tuple[str, ...] = DELTAS, *, final: bool = True) -> list[bytes]:
        """The answer, whole, or (not ``final``) cut before anything of its end: OpenAI's
        finish reason, usage and ``[DONE]``, Anthropic's ``message_delta`` and
        ``message_stop`` (after the finish reason and usage, or the ``message_delta``,
        nothing of the answer is missing: it is read as complete, see below)."""
        if self.wire == "openai":
            return openai_stream(deltas) if final else openai_stream(deltas, usage=None)[:-2]
        return anthropic_stream(deltas) if final else anthropic_stream(deltas, stop=False)[:-1]

    def error_event(self, transient: bool) -> bytes:
        if self.wire == "openai":
            error = openai_error("The server had an error.", "server_error", "server_error")
            return sse(error if transient else openai_error("Bad input.", "invalid_value"))
        return anthropic_error_event("overloaded_error" if transient else "invalid_request_error")

    def error_body(self, type_: str) -> object:
        return openai_error("Failed.", type_) if self.wire == "openai" else anthropic_error(type_)


@pytest.fixture(params=["openai", "anthropic"])
async def upstream(
    request: pytest.FixtureRequest, http: httpx.AsyncClient
) -> AsyncIterator[Upstream]:
    default = openai_default() if request.param == "openai" else anthropic_default()
    async with FakeProviderServer(default) as server:
        yield Upstream(request.param, server, http)


def _head_and_tail(upstream: Upstream) -> tuple[list[bytes], int]:
    """A stream and how many of its leading pieces carry the first two deltas."""
    pieces = upstream.stream()
    return pieces, (3 if upstream.wire == "openai" else 5)


async def test_a_429_is_retried_after_the_retry_after_seconds(upstream: Upstream) -> None:
    upstream.server.script(
        Reply(status=429, headers={"Retry-After": "2"}, body=upstream.error_body("rate_limit"))
    )

    events = await collect(upstream.model().stream(REQUEST))

    assert text_of(events) == "".join(DELTAS)
    assert upstream.sleeps == [2.0]
    assert len(upstream.server.requests) == 2


async def test_a_long_retry_after_is_capped(upstream: Upstream) -> None:
    upstream.server.script(Reply(status=429, headers={"Retry-After": "3600"}))

    await collect(upstream.model().stream(REQUEST))

    assert upstream.sleeps == [FAST.retry_after_cap]


async def test_a_500_before_the_first_token_is_retried_with_backoff(upstream: Upstream) -> None:
    upstream.server.script(Reply(status=500, body=upstream.error_body("server_error")))

    events = await collect(upstream.model().stream(REQUEST))

    assert events[-1] == StreamEnd(finish_reason=events[-1].finish_reason, usage=PROVIDER_USAGE)
    assert len(upstream.sleeps) == 1
    assert FAST.backoff_base / 2 <= upstream.sleeps[0] <= FAST.backoff_base
    assert len(upstream.server.requests) == 2


async def test_a_provider_that_keeps_failing_gives_up_after_the_last_attempt(
    upstream: Upstream,
) -> None:
    upstream.server.script(*[Reply(status=503)] * FAST.max_attempts)

    with pytest.raises(ProviderError, match="HTTP 503") as raised:
        await collect(upstream.model().stream(REQUEST))

    assert raised.value.retryable
    assert len(upstream.server.requests) == FAST.max_attempts
    assert len(upstream.sleeps) == FAST.max_attempts - 1


@pytest.mark.parametrize(
    ("status", "falls_back"),
    [(400, False), (413, False), (422, False), (401, True), (403, True), (404, True)],
)
async def test_a_refused_request_lets_another_model_answer_only_when_the_request_is_not_at_fault(
    upstream: Upstream, status: int, falls_back: bool
) -> None:
    upstream.server.script(Reply(status=status, body=upstream.error_body("invalid_request_error")))

    with pytest.raises(ProviderError, match=f"HTTP {status}") as raised:
        await collect(upstream.model().stream(REQUEST))

    assert raised.value.falls_back is falls_back
    assert not raised.value.retryable
    assert len(upstream.server.requests) == 1


async def test_a_rejected_key_fails_at_once_without_revealing_it(upstream: Upstream) -> None:
    wrong_key = "sk-wrong-secret-key-42"

    with pytest.raises(ProviderError, match="HTTP 401") as raised:
        await collect(upstream.model(api_key=wrong_key).stream(REQUEST))

    assert not raised.value.retryable
    assert wrong_key not in str(raised.value)
    assert wrong_key not in repr(raised.value.details)
    assert len(upstream.server.requests) == 1


async def test_an_error_event_after_the_first_token_ends_the_stream(upstream: Upstream) -> None:
    pieces, head = _head_and_tail(upstream)
    upstream.server.script(Reply(chunks=[*pieces[:head], upstream.error_event(transient=True)]))
    received: list[StreamEvent] = []

    with pytest.raises(ProviderError, match="mid-stream") as raised:
        await read_into(received, upstream.model().stream(REQUEST))

    assert not raised.value.retryable
    assert text_of(received) == "Hello, "
    assert len(upstream.server.requests) == 1


async def test_a_transient_error_event_before_the_first_token_is_retried(
    upstream: Upstream,
) -> None:
    pieces = upstream.stream()
    upstream.server.script(Reply(chunks=[pieces[0], upstream.error_event(transient=True)]))

    events = await collect(upstream.model().stream(REQUEST))

    assert text_of(events) == "".join(DELTAS)
    assert len(upstream.server.requests) == 2


async def test_a_stream_cut_without_its_final_event_fails(upstream: Upstream) -> None:
    pieces = upstream.stream(final=False)
    upstream.server.script(*[Reply(chunks=pieces)] * FAST.max_attempts)
    received: list[StreamEvent] = []

    with pytest.raises(ProviderError, match="stream cut") as raised:
        await read_into(received, upstream.model().stream(REQUEST))

    assert not raised.value.retryable  # tokens had been streamed: no retry
    assert text_of(received) == "".join(DELTAS)
    assert len(upstream.server.requests) == 1


async def test_a_stream_cut_after_its_end_was_told_is_complete(upstream: Upstream) -> None:
    """Cut (closed, or dropped) after OpenAI's finish reason and usage but before ``[DONE]``,
    or after Anthropic's ``message_delta`` but before ``message_stop``: nothing of the answer
    is missing, and it ends as told, with the usage the provider reported."""
    whole = upstream.stream()
    upstream.server.script(
        Reply(chunks=whole[:-1]), Reply(chunks=whole[:-1], abort=True)
    )  # fmt: skip
    for _ in range(2):
        events = await collect(upstream.model().stream(REQUEST))
        assert text_of(events) == "".join(DELTAS)
        end = events[-1]
        assert isinstance(end, StreamEnd)
        assert (end.usage.prompt_tokens, end.usage.completion_tokens) == (
            PROMPT_TOKENS, COMPLETION_TOKENS,
        )  # fmt: skip
    assert len(upstream.server.requests) == 2


async def test_a_dropped_connection_mid_stream_fails_as_a_cut_stream(upstream: Upstream) -> None:
    pieces, head = _head_and_tail(upstream)
    upstream.server.script(Reply(chunks=pieces[:head], abort=True))

    with pytest.raises(ProviderError, match="stream cut") as raised:
        await collect(upstream.model().stream(REQUEST))

    assert not raised.value.retryable


async def test_a_stream_cut_before_the_first_token_is_retried(upstream: Upstream) -> None:
    upstream.server.script(Reply(chunks=upstream.stream()[:1], abort=True))

    events = await collect(upstream.model().stream(REQUEST))

    assert text_of(events) == "".join(DELTAS)
    assert len(upstream.server.requests) == 2


async def test_a_long_gap_between_tokens_fails_the_stream(upstream: Upstream) -> None:
    pieces, head = _head_and_tail(upstream)
    upstream.server.script(Reply(chunks=pieces[:head], hold=True))
    received: list[StreamEvent] = []
    policy = StreamPolicy(idle_timeout=0.2, first_token_timeout=5.0)

    with pytest.raises(ProviderError, match="waiting for the next token") as raised:
        await read_into(received, upstream.model(policy).stream(REQUEST))

    assert not raised.value.retryable
    assert text_of(received) == "Hello, "
    await asyncio.wait_for(upstream.server.disconnected.wait(), 1.0)


async def test_the_end_of_the_stream_then_a_connection_left_open_ends_the_stream_complete(
    upstream: Upstream,
) -> None:
    """``[DONE]`` or ``message_stop``, then a proxy keeping the connection open: the answer is
    complete at its end, nothing after it is waited for (here, for an idle timeout)."""
    upstream.server.script(Reply(chunks=upstream.stream(), hold=True))
    policy = StreamPolicy(idle_timeout=0.3, first_token_timeout=5.0)

    events = await collect(upstream.model(policy).stream(REQUEST))

    assert events[-1] == StreamEnd(finish_reason=events[-1].finish_reason, usage=PROVIDER_USAGE)
    assert text_of(events) == "".join(DELTAS)
    await asyncio.wait_for(upstream.server.disconnected.wait(), 1.0)  # closed, not left open


async def test_a_slow_first_token_fails_without_retrying(upstream: Upstream) -> None:
    upstream.server.script(Reply(chunks=upstream.stream(), first_delay=30.0))
    policy = StreamPolicy(first_token_timeout=0.2)

    with pytest.raises(ProviderError, match="waiting for the first token") as raised:
        await collect(upstream.model(policy).stream(REQUEST))

    assert raised.value.retryable  # the caller may fall back to another model
    assert len(upstream.server.requests) == 1


async def test_closing_the_stream_closes_the_upstream_connection(upstream: Upstream) -> None:
    pieces, head = _head_and_tail(upstream)
    upstream.server.script(Reply(chunks=pieces[:head], hold=True))
    stream = upstream.model().stream(REQUEST)
    await anext(stream)

    await stream.aclose()  # type: ignore[attr-defined]

    await asyncio.wait_for(upstream.server.disconnected.wait(), 1.0)
    assert upstream.server.early_disconnects == 1


async def test_cancelling_the_reading_task_closes_the_upstream_connection(
    upstream: Upstream,
) -> None:
    pieces, head = _head_and_tail(upstream)
    upstream.server.script(Reply(chunks=pieces[:head], hold=True))
    first_delta = asyncio.Event()

    async def read() -> None:
        async for _ in upstream.model().stream(REQUEST):
            first_delta.set()

    reading = asyncio.create_task(read())
    await asyncio.wait_for(first_delta.wait(), 5.0)
    reading.cancel()
    await asyncio.wait([reading], timeout=1.0)

    assert reading.cancelled()
    await asyncio.wait_for(upstream.server.disconnected.wait(), 1.0)


async def test_an_unreachable_provider_fails_as_retryable(http: httpx.AsyncClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the adapter connects
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    model = OpenAIChatModel(http, base_url=f"http://127.0.0.1:{port}/v1", policy=FAST, sleep=record)

    with pytest.raises(ProviderError, match="Could not reach the openai provider") as raised:
        await collect(model.stream(REQUEST))

    assert raised.value.retryable
    assert len(sleeps) == FAST.max_attempts - 1


# --- what each adapter sends, and wire-format details -------------------------------------------
async def test_openai_requests_ask_for_streamed_usage_with_the_bearer_key(
    http: httpx.AsyncClient,
) -> None:
    request = CompletionRequest(
        model="gpt-test",
        messages=REQUEST.messages,
        params=GenerationParams(temperature=0.5, max_tokens=64),
    )
    async with FakeProviderServer(openai_default()) as server:
        model = OpenAIChatModel(http, base_url=f"{server.url}/v1/", api_key=API_KEY)
        await collect(model.stream(request))

    sent = server.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": USER_TEXT},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "max_completion_tokens": 64,
    }


async def test_xai_and_compatible_servers_get_max_tokens_and_no_key_when_none_is_set(
    http: httpx.AsyncClient,
) -> None:
    request = CompletionRequest(
        model="llama", messages=REQUEST.messages, params=GenerationParams(max_tokens=64)
    )
    async with FakeProviderServer(openai_default(expected_key="")) as server:
        model = OpenAIChatModel(http, base_url=server.url, provider="openai-compatible")
        events = await collect(model.stream(request))

    assert model.provider == "openai-compatible"
    assert "authorization" not in server.requests[0].headers
    assert server.requests[0].body["max_tokens"] == 64
    assert "max_completion_tokens" not in server.requests[0].body
    assert text_of(events) == "".join(DELTAS)


async def test_a_server_that_streams_no_usage_gives_zero_usage(http: httpx.AsyncClient) -> None:
    async with FakeProviderServer(openai_default()) as server:
        server.script(Reply(chunks=openai_stream(usage=None, finish_reason="length")))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY)
        events = await collect(model.stream(REQUEST))

    assert events[-1] == StreamEnd(finish_reason="length", usage=TokenUsage())


async def test_openai_streams_survive_any_chunk_boundaries_crlf_and_comments(
    http: httpx.AsyncClient,
) -> None:
    pieces = [b": keep-alive\r\n\r\n"] + [
        p.replace(b"\n", b"\r\n") for p in openai_stream(["Grüße ", "🐋", " done"])
    ]
    async with FakeProviderServer(openai_default()) as server:
        for size in (1, 2, 3, 7):
            server.script(Reply(chunks=split_pieces(pieces, size)))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY)
        results = [await collect(model.stream(REQUEST)) for _ in range(4)]

    for events in results:
        assert text_of(events) == "Grüße 🐋 done"
        assert events[-1] == StreamEnd(finish_reason="stop", usage=PROVIDER_USAGE)


async def test_an_openai_stream_ending_with_done_and_no_blank_line_is_complete(
    http: httpx.AsyncClient,
) -> None:
    pieces = [*openai_stream()[:-1], b"data: [DONE]"]
    async with FakeProviderServer(openai_default()) as server:
        server.script(Reply(chunks=pieces))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY)
        events = await collect(model.stream(REQUEST))

    assert events[-1] == StreamEnd(finish_reason="stop", usage=PROVIDER_USAGE)


async def test_anthropic_requests_carry_key_version_system_and_max_tokens(
    http: httpx.AsyncClient,
) -> None:
    request = CompletionRequest(
        model="claude-test",
        messages=(
            PromptMessage(role=MessageRole.SYSTEM, content="Be brief."),
            PromptMessage(role=MessageRole.USER, content="One."),
            PromptMessage(role=MessageRole.USER, content="Two."),
            PromptMessage(role=MessageRole.ASSISTANT, content="Yes?"),
            PromptMessage(role=MessageRole.SYSTEM, content="Be kind."),
            PromptMessage(role=MessageRole.USER, content="Three."),
        ),
        params=GenerationParams(temperature=1.7),
    )
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=f"{server.url}/", api_key=API_KEY)
        await collect(model.stream(request))
        await collect(
            model.stream(msgspec.structs.replace(REQUEST, params=GenerationParams(max_tokens=99)))
        )

    sent = server.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.body == {
        "model": "claude-test",
        "max_tokens": 1024,
        "messages": [
            # the prompt cache's breakpoints: where the previous request's prompt ended, the
            # last block, and the system prompt
            {"role": "user", "content": [{"type": "text", "text": "One.\n\nTwo.", **CACHED}]},
            {"role": "assistant", "content": "Yes?"},
            {"role": "user", "content": [{"type": "text", "text": "Three.", **CACHED}]},
        ],
        "stream": True,
        "system": [{"type": "text", "text": "Be brief.\n\nBe kind.", **CACHED}],
        "temperature": 1.0,
    }
    assert server.requests[1].body["max_tokens"] == 99


# Anthropic's prompt cache breakpoint, as the adapter marks a block by default
CACHED = {"cache_control": {"type": "ephemeral"}}

SAMPLING = GenerationParams(
    top_p=0.9, stop=("END", "\n\n"), seed=42, presence_penalty=0.5, frequency_penalty=-1.0
)


async def test_openai_compatible_servers_get_every_sampling_param(http: httpx.AsyncClient) -> None:
    request = CompletionRequest(model="llama", messages=REQUEST.messages, params=SAMPLING)
    async with FakeProviderServer(openai_default(expected_key="")) as server:
        model = OpenAIChatModel(http, base_url=server.url, provider="openai-compatible")
        await collect(model.stream(request))
        await collect(model.stream(msgspec.structs.replace(request, params=GenerationParams())))

    sent, plain = server.requests[0].body, server.requests[1].body
    assert {k: sent[k] for k in ("top_p", "stop", "seed")} == {
        "top_p": 0.9, "stop": ["END", "\n\n"], "seed": 42,
    }  # fmt: skip
    assert (sent["presence_penalty"], sent["frequency_penalty"]) == (0.5, -1.0)
    assert not {"top_p", "stop", "seed", "presence_penalty", "frequency_penalty"} & set(plain)


@pytest.mark.parametrize("provider", ["openai", "xai", "openai-compatible"])
async def test_only_openai_is_sent_the_conversations_prompt_cache_key(
    http: httpx.AsyncClient, provider: str
) -> None:
    """OpenAI's ``prompt_cache_key``; other servers may refuse a field they do not know."""
    request = msgspec.structs.replace(REQUEST, conversation="k" * 32)
    async with FakeProviderServer(openai_default()) as server:
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY, provider=provider)
        await collect(model.stream(request))
        await collect(model.stream(REQUEST))

    first, plain = (r.body for r in server.requests)
    assert first.get("prompt_cache_key") == ("k" * 32 if provider == "openai" else None)
    assert "prompt_cache_key" not in plain


async def test_anthropic_gets_top_p_and_stop_sequences_and_nothing_it_does_not_know(
    http: httpx.AsyncClient,
) -> None:
    request = msgspec.structs.replace(REQUEST, params=SAMPLING)
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=f"{server.url}/", api_key=API_KEY)
        await collect(model.stream(request))

    sent = server.requests[0].body
    # "\n\n" is whitespace only: the API refuses those (400), so Whalli applies it itself
    assert (sent["top_p"], sent["stop_sequences"]) == (0.9, ["END"])
    assert not {"stop", "seed", "presence_penalty", "frequency_penalty"} & set(sent)


@pytest.mark.parametrize("stops", [("\n",), ("\n\n", "END")], ids=["newline", "blank line"])
async def test_anthropic_is_cut_at_a_whitespace_stop_sequence_by_whalli(
    http: httpx.AsyncClient, stops: tuple[str, ...]
) -> None:
    """The stop sequence spans deltas; the text before it is passed on, the upstream request
    is closed there (it generates no more), and the output tokens are estimated."""
    deltas = ["Line one", " ends", "\n", "\nLine two", " never seen"]
    request = msgspec.structs.replace(REQUEST, params=GenerationParams(stop=stops))
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=anthropic_stream(deltas), delay=0.01, hold=True))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = await collect(model.stream(request))
        await asyncio.wait_for(server.disconnected.wait(), 1.0)

    assert text_of(events) == "Line one ends"
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.finish_reason == "stop_sequence"
    assert end.usage.prompt_tokens == PROMPT_TOKENS
    assert end.usage.completion_tokens == 4  # 13 bytes of text
    assert server.requests[0].body.get("stop_sequences", []) == [s for s in stops if s.strip()]


async def test_anthropic_keeps_text_held_for_a_stop_sequence_that_never_came(
    http: httpx.AsyncClient,
) -> None:
    request = msgspec.structs.replace(REQUEST, params=GenerationParams(stop=("\n\n",)))
    async with FakeProviderServer(anthropic_stream_reply(["Ends with one newline\n"])) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = await collect(model.stream(request))

    assert text_of(events) == "Ends with one newline\n"
    assert events[-1] == StreamEnd(finish_reason="end_turn", usage=PROVIDER_USAGE)


async def test_anthropic_gets_no_empty_turn_and_alternating_roles(
    http: httpx.AsyncClient,
) -> None:
    """An OpenAI client's assistant turn with null content (an aborted reply, a tool call) is
    refused by the Messages API: it is left out, and the user turns around it joined."""
    messages = (
        PromptMessage(role=MessageRole.USER, content="one"),
        PromptMessage(role=MessageRole.ASSISTANT, content=""),
        PromptMessage(role=MessageRole.USER, content="two"),
        PromptMessage(role=MessageRole.ASSISTANT, content=" \n"),
        PromptMessage(role=MessageRole.USER, content="three"),
    )
    async with FakeProviderServer(anthropic_default()) as server:
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        await collect(model.stream(CompletionRequest(model="claude", messages=messages)))

    assert server.requests[0].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one\n\ntwo\n\nthree", **CACHED}]}
    ]


async def test_anthropic_usage_adds_cached_input_and_takes_the_last_output_count(
    http: httpx.AsyncClient,
) -> None:
    pieces = anthropic_stream(["Hi"], input_tokens=5, output_tokens=9, stop_reason="max_tokens")
    final_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {"input_tokens": 5, "cache_read_input_tokens": 20, "output_tokens": 9},
    }
    pieces[-2] = sse(final_delta, "message_delta")
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=pieces))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY)
        events = await collect(model.stream(REQUEST))

    usage = TokenUsage(prompt_tokens=25, completion_tokens=9, cached_prompt_tokens=20)
    assert events == [StreamDelta(text="Hi"), StreamEnd(finish_reason="max_tokens", usage=usage)]


async def test_anthropic_counts_the_prompt_at_its_start_and_keeps_counts_a_delta_leaves_null(
    http: httpx.AsyncClient,
) -> None:
    """``message_start`` counts the prompt (a ``StreamStart``, first: what a reply stopped or
    failed before its end is charged); a ``message_delta`` repeating ``input_tokens`` with the
    cache's counts null keeps them."""
    pieces = anthropic_stream(["Hi"], input_tokens=3, output_tokens=7)
    start = json.loads(pieces[0].decode().split("data: ", 1)[1])
    start["message"]["usage"] |= {"cache_read_input_tokens": 5000, "cache_creation_input_tokens": 0}
    pieces[0] = sse(start, "message_start")
    final_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 3, "cache_read_input_tokens": None,
                  "cache_creation_input_tokens": None, "output_tokens": 7},
    }  # fmt: skip
    pieces[-2] = sse(final_delta, "message_delta")
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=pieces))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY)
        events = await collect_all(model.stream(REQUEST))

    counted = TokenUsage(prompt_tokens=5003, completion_tokens=1, cached_prompt_tokens=5000)
    assert events[0] == StreamStart(usage=counted)
    end = msgspec.structs.replace(counted, completion_tokens=7)
    assert events[1:] == [StreamDelta(text="Hi"), StreamEnd(finish_reason="end_turn", usage=end)]


async def test_an_openai_error_chunk_before_any_token_that_is_not_transient_is_not_retried(
    http: httpx.AsyncClient,
) -> None:
    error = sse(openai_error("Bad input.", "invalid_value"))
    async with FakeProviderServer(openai_default()) as server:
        server.script(Reply(chunks=[sse(openai_chunk({"role": "assistant"})), error]))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        with pytest.raises(ProviderError, match=r"mid-stream \(invalid_value\)") as raised:
            await collect(model.stream(REQUEST))

    assert not raised.value.retryable
    assert len(server.requests) == 1


async def test_an_openai_finish_reason_error_fails_the_stream_after_its_text(
    http: httpx.AsyncClient,
) -> None:
    """OpenRouter's normalised reason for a generation that failed, without an ``error``
    object: failed as an ``error`` chunk fails it, the text before it passed on."""
    async with FakeProviderServer(openai_default()) as server:
        server.script(Reply(chunks=openai_stream(["par"], finish_reason="error")))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        received: list[StreamEvent] = []
        with pytest.raises(ProviderError, match="finish reason 'error'") as raised:
            await read_into(received, model.stream(REQUEST))

    assert not raised.value.retryable
    assert raised.value.falls_back
    assert text_of(received) == "par"
    assert len(server.requests) == 1


async def test_an_openai_server_ignoring_stream_true_is_read_from_its_json_completion(
    http: httpx.AsyncClient,
) -> None:
    completion = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{
            "index": 0, "finish_reason": "length",
            "message": {"role": "assistant", "content": "Whole", "reasoning_content": "Hm."},
        }],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }  # fmt: skip
    async with FakeProviderServer(openai_default()) as server:
        server.script(Reply(body=completion))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = await collect(model.stream(REQUEST))

    assert events == [
        StreamReasoning(text="Hm."),
        StreamDelta(text="Whole"),
        StreamEnd(finish_reason="length", usage=TokenUsage(prompt_tokens=5, completion_tokens=2)),
    ]
    assert len(server.requests) == 1


async def test_an_openai_json_answer_that_is_an_error_fails_as_an_error_chunk(
    http: httpx.AsyncClient,
) -> None:
    async with FakeProviderServer(openai_default()) as server:
        server.script(Reply(body=openai_error("Bad input.", "invalid_value")))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        with pytest.raises(ProviderError, match=r"mid-stream \(invalid_value\): Bad input"):
            await collect(model.stream(REQUEST))

    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        ((b"a \\ud83d", b"\\ude00 b"), "x a \U0001f600 b"),  # whole again
        ((b"a \\ud83d", b" b \\ude00"), "x a \ufffd b \ufffd"),  # each half alone
    ],
    ids=["joined", "alone"],
)
async def test_an_openai_emoji_split_into_two_escaped_halves_is_whole_again(
    http: httpx.AsyncClient, contents: tuple[bytes, bytes], expected: str
) -> None:
    """An emoji split by UTF-16 code units into two escaped halves, one per delta (legal JSON
    msgspec refuses, as a proxy slicing JavaScript strings sends it): joined again; a half
    left alone reads as U+FFFD, and the text stays valid."""
    halves = [
        b'data: {"choices":[{"index":0,"delta":{"content":"' + c + b'"}}]}\n\n' for c in contents
    ]
    pieces = openai_stream(["x "])
    async with FakeProviderServer(openai_default()) as server:
        server.script(Reply(chunks=[*pieces[:2], *halves, *pieces[2:]]))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = await collect(model.stream(REQUEST))

    assert text_of(events) == expected
    text_of(events).encode()  # valid UTF-8: it can be stored and streamed
    assert events[-1] == StreamEnd(finish_reason="stop", usage=PROVIDER_USAGE)


async def test_an_anthropic_emoji_split_into_two_escaped_halves_is_whole_again(
    http: httpx.AsyncClient,
) -> None:
    pieces = [
        p.replace(b"@HIGH@", b"\\ud83d").replace(b"@LOW@", b"\\ude00")
        for p in anthropic_stream(["a @HIGH@", "@LOW@ b"])
    ]
    async with FakeProviderServer(anthropic_default()) as server:
        server.script(Reply(chunks=pieces))
        model = AnthropicChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = await collect(model.stream(REQUEST))

    assert text_of(events) == "a \U0001f600 b"
    assert isinstance(events[-1], StreamEnd)


async def test_a_stream_is_asked_for_uncompressed_and_a_compressed_one_is_still_read(
    upstream: Upstream,
) -> None:
    # (a compressing proxy in front of a provider holds tokens back until its buffer fills)
    await collect(upstream.model().stream(REQUEST))
    assert upstream.server.requests[-1].headers["accept-encoding"] == "identity"

    # a server that compresses anyway: one gzip member, cut across chunks
    packed = gzip.compress(b"".join(upstream.stream()))
    upstream.server.script(
        Reply(headers={"Content-Encoding": "gzip"}, chunks=split_pieces([packed], 7))
    )
    events = await collect(upstream.model().stream(REQUEST))

    assert text_of(events) == "".join(DELTAS)
    assert isinstance(events[-1], StreamEnd)


async def test_local_stops_cut_the_text_and_close_the_upstream_request(upstream: Upstream) -> None:
    """A stop the model refuses (``local_stops``, not sent) is applied by the adapter: the
    text ends where the sequence begins, the reply ends as a stop sequence would end it, and
    the rest is not read (the provider sees the request closed)."""
    pieces = upstream.stream()
    upstream.server.script(Reply(chunks=pieces[:-1], hold=True))  # its end never comes
    request = msgspec.structs.replace(REQUEST, local_stops=("xyz", ", wo"))

    events = await asyncio.wait_for(collect(upstream.model().stream(request)), 5.0)

    assert text_of(events) == "Hello"
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.finish_reason in ("stop", "stop_sequence")
    sent = upstream.server.requests[-1].body
    assert "stop" not in sent
    assert "stop_sequences" not in sent
    await asyncio.wait_for(upstream.server.disconnected.wait(), 1.0)
