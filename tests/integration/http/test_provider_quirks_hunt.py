"""A hunt in how Whalli talks to AI providers that speak their wire formats in legal but unusual
ways, or misbehave as real ones do: SSE framing (no space after ``data:``, CR and CRLF line
endings, a BOM, comments, ``id``/``retry`` fields, an event cut at every byte), OpenAI-compatible
quirks (usage in the last choice chunk, ``usage: null``, no ``[DONE]``, ``[DONE]`` then silence,
an error chunk in a 200, a server ignoring ``stream: true``), Anthropic's (``error`` events,
529, pings, unknown events and blocks, stop reasons, usage only in ``message_start``), retries
(``Retry-After`` as a date or garbage) and timeouts (first token, idle). Each goes through the
real app (``/api/chat/start`` + ``/api/chat/stream``, and ``/v1/chat/completions`` streamed and
not) on the shared Postgres and Redis, with scripted providers on loopback
(``FakeProviderServer``); timeouts are configured small so nothing waits long. Kept as a
regression suite: it found seven defects, all fixed since: a leading BOM dropped the first
event; an event ended by a lone CR waited for more bytes; ``[DONE]`` (or Anthropic's
``message_stop``) followed by a connection left open failed a complete reply at the idle
timeout; a server ignoring ``stream: true`` lost its answer; an escaped lone surrogate failed
the reply; a reply finished with ``finish_reason: "error"`` was saved complete and cached."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.integration.http.test_chat_flow import Chat, _app, _text, _until_final
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    anthropic_default,
    anthropic_error,
    anthropic_stream,
    openai_chunk,
    openai_default,
    openai_error,
    openai_stream,
    split_pieces,
    sse,
)
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.chats import MessageStatus

MODEL = "openai/gpt-4o-mini"  # free, no fallback
HAIKU = "anthropic/claude-3-5-haiku"  # falls back to gpt-4o-mini
Events = list[tuple[str | None, str, dict[str, Any]]]

# Small timeouts: a silent provider is noticed in about a second.
FAST = {
    "WHALLI_PROVIDER_FIRST_TOKEN_TIMEOUT_S": "1.5",
    "WHALLI_PROVIDER_IDLE_TIMEOUT_S": "1",
    "WHALLI_PROVIDER_CONNECT_TIMEOUT_S": "2",
}

# the done event's usage figures apart from the prompt and completion counts, all 0 here
NOTHING_APART = {"cachedPromptTokens": 0, "cacheWriteTokens": 0, "reasoningTokens": 0}


@pytest.fixture
async def chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    async with FakeProviderServer(openai_default()) as provider, _app(
        stack_urls, unique, provider, **FAST
    ) as chat:  # fmt: skip
        yield chat


@asynccontextmanager
async def _with_anthropic(
    stack_urls: StackUrls, unique: str
) -> AsyncIterator[tuple[Chat, FakeProviderServer]]:
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(anthropic_default()) as anthropic,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic.url, **FAST,
        ) as chat,
    ):  # fmt: skip
        yield chat, anthropic


@pytest.fixture
async def claude(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[tuple[Chat, FakeProviderServer]]:
    async with _with_anthropic(stack_urls, unique) as pair:
        yield pair


async def _ask(chat: Chat, model: str = MODEL, **extra: Any) -> tuple[dict[str, Any], Events]:
    alice = await chat.world.register(f"u{uuid.uuid4().hex[:8]}")
    started = await chat.start(alice["auth"], model=model, message=f"Q {uuid.uuid4()}", **extra)
    events = await chat.events(started["sessionId"])
    return started, events


async def _v1_key(chat: Chat) -> dict[str, str]:
    user = await chat.world.register(f"k{uuid.uuid4().hex[:8]}")
    created = await chat.client.post("/api/keys", json={"name": "sdk"}, headers=user["auth"])
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['secret']}"}


def _v1_body(model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {
        "model": model, "cache": False,
        "messages": [{"role": "user", "content": f"Q {uuid.uuid4()}"}], **extra,
    }  # fmt: skip


async def _v1_stream(chat: Chat, key: dict[str, str], **extra: Any) -> list[Any]:
    """The data payloads of a streamed /v1 answer (JSON, or the ``[DONE]`` string)."""
    payloads: list[Any] = []
    async with chat.client.stream(
        "POST", "/v1/chat/completions", json=_v1_body(stream=True, **extra), headers=key
    ) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                payloads.append(data if data == "[DONE]" else json.loads(data))
    return payloads


def _hello(*, usage: tuple[int, int] | None = (11, 4)) -> list[bytes]:
    return openai_stream(usage=usage)


# === SSE framing ==================================================================================
def _reframed(pieces: list[bytes], newline: bytes, *, space: bool = True) -> list[bytes]:
    out = []
    for piece in pieces:
        text = piece if space else piece.replace(b"data: ", b"data:")
        out.append(text.replace(b"\n", newline))
    return out


@pytest.mark.parametrize(
    ("newline", "space"), [(b"\r\n", True), (b"\r", True), (b"\n", False), (b"\r\n", False)]
)
async def test_line_endings_and_no_space_after_the_colon_give_the_same_reply(
    chat: Chat, newline: bytes, space: bool
) -> None:
    chat.provider.script(Reply(chunks=_reframed(_hello(), newline, space=space)))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"
    assert events[-1][2]["usage"] == {"promptTokens": 11, "completionTokens": 4, **NOTHING_APART}


async def test_a_stream_cut_into_single_bytes_with_crlf_and_emoji_is_read_whole(
    chat: Chat,
) -> None:
    deltas = ["héllo ", "😀", " wörld", "✓"]
    pieces = _reframed(openai_stream(deltas), b"\r\n")
    chat.provider.script(Reply(chunks=split_pieces(pieces, 1)))
    started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "".join(deltas)
    reply = await _until_final(chat, started["chatId"])
    assert reply.content == "".join(deltas)


async def test_comments_ids_retry_and_event_fields_on_an_openai_stream_are_ignored(
    chat: Chat,
) -> None:
    pieces = [b": OPENROUTER PROCESSING\n\n", b"retry: 3000\n\n"]
    for n, piece in enumerate(_hello()):
        pieces.append(b": keep-alive\n" + f"id: {n}\n".encode() + piece)
    chat.provider.script(Reply(chunks=pieces))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"


async def test_a_byte_order_mark_before_the_first_event_loses_no_text(chat: Chat) -> None:
    """The event-stream format strips one leading BOM; the first event then reads as any."""
    pieces = openai_stream()[1:]  # no role-only chunk: the first event carries text
    pieces[0] = b"\xef\xbb\xbf" + pieces[0]
    chat.provider.script(Reply(chunks=pieces))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", pytest.param(b"\r", id="cr")])
async def test_a_token_is_passed_on_before_the_next_chunk_whatever_the_line_ending(
    chat: Chat, newline: bytes
) -> None:
    """CR alone ends a line in the event-stream format. The provider sends its first token
    (CR line endings) and then waits for the test's go-ahead: the token must reach the
    reader meanwhile, not be held until more bytes come (here: until the first-token
    timeout fails the reply)."""
    gate = asyncio.Event()
    pieces = _reframed(_hello(), newline)
    chat.provider.script(Reply(chunks=pieces, gate=gate, gate_after=2))  # role, "Hello"
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}")
    try:
        first = await chat.events(started["sessionId"], limit=1)
    finally:
        gate.set()
    assert first[0][1:] == ("token", {"delta": "Hello"}), first
    rest = await chat.events(started["sessionId"], last_event_id=first[0][0])
    assert rest[-1][1] == "done", rest[-1]


# === OpenAI-compatible quirks =====================================================================
async def test_usage_in_the_last_chunk_with_choices_and_null_usage_elsewhere(chat: Chat) -> None:
    pieces = [sse(openai_chunk({"role": "assistant"}) | {"usage": None})]
    pieces += [sse(openai_chunk({"content": t}) | {"usage": None}) for t in ("a", "b")]
    last = openai_chunk({"content": None}, "stop")
    last["usage"] = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    pieces += [sse(last), sse(openai_chunk({}) | {"choices": []}), sse("[DONE]")]
    chat.provider.script(Reply(chunks=pieces))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "ab"
    assert events[-1][2]["usage"] == {"promptTokens": 7, "completionTokens": 2, **NOTHING_APART}
    assert events[-1][2]["finishReason"] == "stop"


async def test_a_clean_close_without_done_after_a_finish_reason(chat: Chat) -> None:
    """Some compatible servers (older llama.cpp, some proxies) end a complete answer by
    closing, without ``[DONE]``: the answer had its finish reason and usage."""
    chat.provider.script(Reply(chunks=openai_stream(done=False)))
    started, events = await _ask(chat)
    reply = await _until_final(chat, started["chatId"])
    # whichever way it is read, the text is kept and the stream ends with a final event
    assert events[-1][1] in ("done", "error")
    assert reply.content == "Hello, world!"


async def test_done_then_more_data_keeps_the_answer_before_done(chat: Chat) -> None:
    pieces = [*_hello(), sse(openai_chunk({"content": " EXTRA"})), b"data: not json\n\n"]
    chat.provider.script(Reply(chunks=pieces))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"


async def test_done_then_a_connection_left_open_ends_the_reply_as_done(chat: Chat) -> None:
    """A proxy that keeps the connection open after ``[DONE]``: the answer is complete at
    ``[DONE]``; reading on to reuse the connection must not turn it into a timeout."""
    chat.provider.script(Reply(chunks=_hello(), hold=True))
    started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    reply = await _until_final(chat, started["chatId"])
    assert (reply.status, reply.content) == (MessageStatus.COMPLETE, "Hello, world!")


async def test_v1_done_then_a_connection_left_open_answers_the_completion(chat: Chat) -> None:
    chat.provider.script(Reply(chunks=_hello(), hold=True))
    key = await _v1_key(chat)
    answer = await chat.client.post("/v1/chat/completions", json=_v1_body(), headers=key)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Hello, world!"


@pytest.mark.parametrize(
    ("upstream", "mapped"),
    [("length", "length"), ("content_filter", "content_filter"), ("eos", "stop")],
)
async def test_v1_stream_maps_finish_reasons_and_ends_with_done(
    chat: Chat, upstream: str, mapped: str
) -> None:
    chat.provider.script(Reply(chunks=openai_stream(finish_reason=upstream)))
    key = await _v1_key(chat)
    payloads = await _v1_stream(chat, key, stream_options={"include_usage": True})
    assert payloads[-1] == "[DONE]"
    finishing = [p for p in payloads[:-1] if p["choices"] and p["choices"][0]["finish_reason"]]
    assert [p["choices"][0]["finish_reason"] for p in finishing] == [mapped]
    assert payloads[-2]["usage"]["completion_tokens"] == 4


async def test_null_content_and_role_only_chunks_add_no_text(chat: Chat) -> None:
    pieces = [
        sse(openai_chunk({"role": "assistant", "content": None})),
        sse(openai_chunk({"role": "assistant"})),
        sse(openai_chunk({"content": None})),
        sse(openai_chunk({"content": "ok"})),
        sse(openai_chunk({"content": None}, "stop")),
        sse("[DONE]"),
    ]
    chat.provider.script(Reply(chunks=pieces))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "ok"


async def test_an_error_chunk_in_a_200_after_text_fails_the_reply_keeping_it(chat: Chat) -> None:
    """OpenRouter reports an upstream failure mid-stream as a data chunk with ``error`` (and
    ``finish_reason: "error"``)."""
    error = openai_chunk({"content": ""}, "error")
    error["error"] = {"code": 502, "message": "Provider returned error"}
    pieces = [*openai_stream(["part"], usage=None, done=False)[:2], sse(error)]
    chat.provider.script(Reply(chunks=pieces))
    started, events = await _ask(chat)
    assert events[-1][1] == "error", events[-1]
    assert "Provider returned error" in events[-1][2]["message"]
    reply = await _until_final(chat, started["chatId"])
    assert (reply.status, reply.content) == (MessageStatus.FAILED, "part")


async def test_a_gzipped_stream_is_read(chat: Chat) -> None:
    body = gzip.compress(b"".join(_hello()))
    chat.provider.script(
        Reply(chunks=split_pieces([body], 7), headers={"Content-Encoding": "gzip"})
    )
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"


# === errors, retries and timeouts =================================================================
async def test_headers_then_silence_times_out_and_the_reply_fails(chat: Chat) -> None:
    chat.provider.script(Reply(chunks=[b": hi\n\n"], hold=True), Reply(chunks=[], hold=True))
    started, events = await _ask(chat)
    assert events[-1][1] == "error", events[-1]
    reply = await _until_final(chat, started["chatId"])
    assert reply.status is MessageStatus.FAILED


async def test_one_token_then_silence_fails_the_reply_keeping_the_token(chat: Chat) -> None:
    pieces = openai_stream(["only"], usage=None, done=False)[:2]
    chat.provider.script(Reply(chunks=pieces, hold=True))
    started, events = await _ask(chat)
    assert _text(events) == "only"
    assert events[-1][1] == "error", events[-1]
    reply = await _until_final(chat, started["chatId"])
    assert (reply.status, reply.content) == (MessageStatus.FAILED, "only")
    assert len(chat.provider.requests) == 1  # never retried after a token
    await asyncio.wait_for(chat.provider.disconnected.wait(), timeout=10)


@pytest.mark.parametrize(
    "retry_after", ["Wed, 21 Oct 2015 07:28:00 GMT", "soon", "-5", "nan", "1e400"]
)
async def test_a_429_with_an_odd_retry_after_is_retried_promptly(
    chat: Chat, retry_after: str
) -> None:
    limited = Reply(
        status=429, headers={"Retry-After": retry_after},
        body=openai_error("Rate limit reached", "rate_limit_exceeded", "requests"),
    )  # fmt: skip
    chat.provider.script(limited)
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"
    assert len(chat.provider.requests) == 2


async def test_a_503_with_an_html_body_leaks_nothing_and_fails_after_retries(chat: Chat) -> None:
    html = Reply(status=503, body="<html><body>nginx secret-internal-host</body></html>")
    chat.provider.script(html, html)
    _started, events = await _ask(chat)
    assert events[-1][1] == "error", events[-1]
    assert "secret-internal-host" not in events[-1][2]["message"]
    assert len(chat.provider.requests) == 2


async def test_a_connection_reset_before_any_header_is_retried(chat: Chat) -> None:
    """A server that drops the connection on reading the request (a restarting proxy): the
    next attempt answers."""

    def reset(_: RecordedRequest) -> Reply:
        return Reply(chunks=[], abort=True)  # headers then a reset: no body at all

    chat.provider.script(reset)
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"
    assert len(chat.provider.requests) == 2


async def test_a_text_plain_content_type_is_still_read_as_events(chat: Chat) -> None:
    chat.provider.script(Reply(chunks=_hello(), headers={"Content-Type": "text/plain"}))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"


async def test_a_server_ignoring_stream_true_still_answers(chat: Chat) -> None:
    """Some OpenAI-compatible servers and proxies ignore ``stream: true`` and answer one
    ``chat.completion`` as application/json: a complete answer, not a cut stream."""
    completion = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{
            "index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Whole answer"},
        }],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }  # fmt: skip
    chat.provider.script(Reply(body=completion), Reply(body=completion))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Whole answer"


# === Anthropic ====================================================================================
def _claude_text(deltas: tuple[str, ...] = ("Hi", " there")) -> list[bytes]:
    return anthropic_stream(deltas)


async def test_anthropic_pings_unknown_events_and_unknown_blocks_are_skipped(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    chat, anthropic = claude
    base = _claude_text()
    ping = sse({"type": "ping"}, "ping")
    odd = [
        sse({"type": "content_block_start", "index": 1,
             "content_block": {"type": "server_tool_use", "id": "srvtoolu_1",
                               "name": "web_search", "input": {}}}, "content_block_start"),
        sse({"type": "content_block_delta", "index": 1,
             "delta": {"type": "input_json_delta", "partial_json": '{"q": "x"}'}},
            "content_block_delta"),
        sse({"type": "content_block_stop", "index": 1}, "content_block_stop"),
        sse({"type": "content_block_start", "index": 2,
             "content_block": {"type": "redacted_thinking", "data": "abc"}},
            "content_block_start"),
        sse({"type": "content_block_stop", "index": 2}, "content_block_stop"),
        sse({"type": "brand_new_event", "stuff": 1}, "brand_new_event"),
        sse({"type": "content_block_delta", "index": 0,
             "delta": {"type": "citations_delta", "citation": {"cited_text": "x"}}},
            "content_block_delta"),
    ]  # fmt: skip
    pieces = [base[0], ping, *odd, ping]
    for piece in base[1:]:
        pieces += [piece, ping]
    anthropic.script(Reply(chunks=pieces))
    started, events = await _ask(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hi there"
    assert events[-1][2]["usage"] == {"promptTokens": 11, "completionTokens": 4, **NOTHING_APART}
    reply = await _until_final(chat, started["chatId"])
    assert (reply.model, reply.content) == (HAIKU, "Hi there")


async def test_anthropic_usage_only_in_message_start_is_recorded(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    chat, anthropic = claude
    pieces = _claude_text()
    start = json.loads(pieces[0].split(b"data: ", 1)[1])
    start["message"]["usage"] = {"input_tokens": 21, "output_tokens": 3}
    pieces[0] = sse(start, "message_start")
    ending = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
    pieces[-2] = sse(ending, "message_delta")  # no usage at all
    anthropic.script(Reply(chunks=pieces))
    _started, events = await _ask(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    assert events[-1][2]["usage"] == {"promptTokens": 21, "completionTokens": 3, **NOTHING_APART}


async def test_anthropic_error_event_after_text_fails_the_reply_without_fallback(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    chat, anthropic = claude
    pieces = _claude_text()[:4]  # message_start, block start, ping, "Hi"
    pieces.append(sse(anthropic_error("overloaded_error", "Overloaded"), "error"))
    anthropic.script(Reply(chunks=pieces))
    started, events = await _ask(chat, HAIKU)
    assert _text(events) == "Hi"
    assert events[-1][1] == "error", events[-1]
    assert "overloaded_error" in events[-1][2]["message"]
    reply = await _until_final(chat, started["chatId"])
    assert (reply.status, reply.content, reply.model) == (MessageStatus.FAILED, "Hi", HAIKU)
    assert chat.provider.requests == []  # no fallback once text was streamed
    assert len(anthropic.requests) == 1


async def test_anthropic_529_then_overloaded_event_before_text_falls_back(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    chat, anthropic = claude
    overloaded = Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded"))
    event = [*_claude_text()[:2], sse(anthropic_error("overloaded_error"), "error")]
    anthropic.script(overloaded, Reply(chunks=event))
    started, events = await _ask(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"
    reply = await _until_final(chat, started["chatId"])
    assert (reply.status, reply.model) == (MessageStatus.COMPLETE, MODEL)
    assert len(anthropic.requests) == 2  # WHALLI_PROVIDER_MAX_ATTEMPTS=2


async def test_anthropic_first_token_timeout_falls_back(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    chat, anthropic = claude
    pings = _claude_text()[:3]  # message_start, block start, ping: no text
    anthropic.script(Reply(chunks=pings, hold=True))
    started, events = await _ask(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    reply = await _until_final(chat, started["chatId"])
    assert (reply.model, reply.content) == (MODEL, "Hello, world!")
    # the silent upstream request was closed, not left generating (and billing)
    await asyncio.wait_for(anthropic.disconnected.wait(), timeout=10)


@pytest.mark.parametrize(
    ("stop_reason", "mapped"),
    [("max_tokens", "length"), ("refusal", "content_filter"), ("pause_turn", "stop"),
     ("stop_sequence", "stop")],
)  # fmt: skip
async def test_v1_maps_anthropic_stop_reasons(
    claude: tuple[Chat, FakeProviderServer], stop_reason: str, mapped: str
) -> None:
    chat, anthropic = claude
    anthropic.script(Reply(chunks=anthropic_stream(stop_reason=stop_reason)))
    key = await _v1_key(chat)
    payloads = await _v1_stream(chat, key, model=HAIKU)
    assert payloads[-1] == "[DONE]"
    reasons = [p["choices"][0]["finish_reason"] for p in payloads[:-1] if p["choices"]]
    assert [r for r in reasons if r] == [mapped]


async def test_anthropic_message_stop_then_a_connection_left_open_is_done(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    chat, anthropic = claude
    anthropic.script(Reply(chunks=_claude_text(), hold=True))
    started, events = await _ask(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    reply = await _until_final(chat, started["chatId"])
    assert (reply.status, reply.content) == (MessageStatus.COMPLETE, "Hi there")


# === more framing and cuts (guards) ===============================================================
async def test_an_event_whose_json_spans_several_data_lines_is_joined(chat: Chat) -> None:
    chunk = json.dumps(openai_chunk({"content": "joined"}), indent=1)
    multi = "".join(f"data: {line}\n" for line in chunk.split("\n")).encode() + b"\n"
    pieces = _hello(usage=None)
    chat.provider.script(Reply(chunks=[pieces[0], multi, *pieces[-2:]]))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "joined"


async def test_a_cut_inside_a_multibyte_character_keeps_what_was_streamed_intact(
    chat: Chat,
) -> None:
    first = openai_stream(["ça "], usage=None, done=False)[:2]
    raw = json.dumps(openai_chunk({"content": "😀!"}), ensure_ascii=False)
    torn = f"data: {raw}\n\n".encode()
    half = torn[: torn.index("😀".encode()) + 2]  # the emoji's first two bytes only
    chat.provider.script(Reply(chunks=[*first, half], abort=True))
    started, events = await _ask(chat)
    assert events[-1][1] == "error", events[-1]
    reply = await _until_final(chat, started["chatId"])
    assert (reply.status, reply.content) == (MessageStatus.FAILED, "ça ")


async def test_a_transient_error_chunk_before_any_text_is_retried(chat: Chat) -> None:
    error = openai_error("The server had an error", "server_error", "server_error")
    chat.provider.script(Reply(chunks=[_hello()[0], sse(error)]))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"
    assert len(chat.provider.requests) == 2


async def test_v1_non_streamed_maps_a_length_finish_and_keeps_usage(chat: Chat) -> None:
    chat.provider.script(Reply(chunks=openai_stream(finish_reason="max_tokens", usage=(9, 3))))
    key = await _v1_key(chat)
    answer = await chat.client.post("/v1/chat/completions", json=_v1_body(), headers=key)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "Hello, world!"
    assert body["usage"] == {
        "prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }  # fmt: skip


async def test_anthropic_a_byte_order_mark_loses_no_usage(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    """Anthropic's input token count comes only in ``message_start``, the first event (which
    survives a BOM: the BOM spoils its ``event:`` line, and the type is read from the data)."""
    chat, anthropic = claude
    pieces = _claude_text()
    pieces[0] = b"\xef\xbb\xbf" + pieces[0]
    anthropic.script(Reply(chunks=pieces))
    _started, events = await _ask(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    assert events[-1][2]["usage"] == {"promptTokens": 11, "completionTokens": 4, **NOTHING_APART}


async def test_a_stop_during_a_retry_after_wait_ends_the_reply_at_once(chat: Chat) -> None:
    limited = Reply(
        status=429, headers={"Retry-After": "25"},
        body=openai_error("Rate limit reached", "rate_limit_exceeded", "requests"),
    )  # fmt: skip
    chat.provider.script(limited)
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model=MODEL, message=f"Q {uuid.uuid4()}")
    for _ in range(100):  # until the 429 came back
        if chat.provider.requests:
            break
        await asyncio.sleep(0.05)
    stopped = await chat.client.post(
        f"/api/chat/sessions/{started['sessionId']}/stop", headers=alice["auth"]
    )
    assert stopped.status_code == 202, stopped.text
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done"
    reply = await _until_final(chat, started["chatId"])
    assert reply.status is MessageStatus.ABORTED
    assert len(chat.provider.requests) == 1  # the wait was not sat out, nor the retry sent


async def test_an_emoji_sent_as_two_escaped_surrogate_halves_does_not_fail_the_reply(
    chat: Chat,
) -> None:
    """A proxy re-chunking text by UTF-16 code units (JavaScript's ``slice``) sends each half
    of an astral character as its own ``\\uXXXX`` escape: legal JSON (RFC 8259 §8.2 leaves
    their meaning to the reader), seen on the wire; the reply must not fail for it."""
    halves = [
        b'data: {"choices":[{"index":0,"delta":{"content":"a \\ud83d"}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{"content":"\\ude00 b"}}]}\n\n',
    ]
    pieces = _hello(usage=None)
    first = sse(openai_chunk({"content": "x "}))
    chat.provider.script(Reply(chunks=[pieces[0], first, *halves, *pieces[-2:]]))
    _started, events = await _ask(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "x a \U0001f600 b"  # whole again (sixteenth session)


async def test_a_finish_reason_error_fails_the_reply_keeping_its_text_and_is_never_cached(
    chat: Chat,
) -> None:
    """Whalli's reading of ``finish_reason: "error"`` without an ``error`` object: the provider
    failed its generation, as with an ``error`` chunk: the reply fails keeping its text, the
    same question again reaches the provider, and /v1 answers no ``stop``."""
    chat.provider.script(*[Reply(chunks=openai_stream(["par"], finish_reason="error"))] * 2)
    alice = await chat.world.register("alice")
    prompt = f"Q {uuid.uuid4()}"
    finals = []
    for _ in range(2):
        started = await chat.start(alice["auth"], model=MODEL, message=prompt)
        finals.append((await chat.events(started["sessionId"]))[-1])
        reply = await _until_final(chat, started["chatId"])
        assert (reply.status, reply.content) == (MessageStatus.FAILED, "par")
    assert [final[1] for final in finals] == ["error", "error"]
    assert "finish reason 'error'" in finals[0][2]["message"]
    assert len(chat.provider.requests) == 2

    chat.provider.script(Reply(chunks=openai_stream(["par"], finish_reason="error")))
    key = await _v1_key(chat)
    answer = await chat.client.post("/v1/chat/completions", json=_v1_body(), headers=key)
    assert answer.status_code == 502, answer.text
