"""Hunt S22 of the provider adapters against adversarial but protocol-legal upstream servers on
loopback, through the real app (``/api/chat/start`` + ``/api/chat/stream``, ``GET
/api/chats/{id}``, ``GET /api/usage`` and ``/v1/chat/completions``) on the shared Postgres and
Redis: HTTP framings other than chunked (Content-Length, a body ended by closing the
connection, written by ``RawProvider``), a server that accepts and never answers, 401/403/404
echoing the key, Retry-After as a date, a 200 that is not a stream (HTML, Anthropic's whole
message, a body without end), Anthropic's content blocks carrying their content at their
start, usage chunks that leave counts out, replies without any text, a complete reply followed
by silence, and what is recorded for each. ``test_provider_quirks_hunt.py`` has the SSE framing
and quirk cases this file does not repeat. Defects are ``xfail(strict=True)``, asserting the
correct behaviour."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from tests.integration.http.test_chat_flow import Chat, _app, _text, _until_final
from tests.integration.http.test_provider_quirks_hunt import (
    FAST,
    HAIKU,
    MODEL,
    _v1_body,
    _v1_key,
    _with_anthropic,
)
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    ScriptedCall,
    _read_request,
    anthropic_error,
    anthropic_stream,
    anthropic_tool_stream,
    openai_chunk,
    openai_default,
    openai_error,
    openai_stream,
    openai_tool_stream,
    sse,
)
from tests.support.fake_reasoning import anthropic_thinking_stream
from whalli.adapters.embedded.stack import StackUrls

PROBLEM = "application/problem+json"


@pytest.fixture
async def chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    async with FakeProviderServer(openai_default()) as provider, _app(
        stack_urls, unique, provider, **FAST
    ) as chat:  # fmt: skip
        yield chat


@pytest.fixture
async def claude(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[tuple[Chat, FakeProviderServer]]:
    async with _with_anthropic(stack_urls, unique) as pair:
        yield pair


# --- a raw provider: bytes exactly as the test writes them ----------------------------------------
Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawProvider:
    """An HTTP/1.1 server on loopback answering each request with the next ``answers``
    writer (a coroutine writing raw bytes), recording the requests; ``url`` for ``_app``."""

    answers: list[Writer]
    requests: list[RecordedRequest] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # a client left
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            answer = self.answers.pop(0) if self.answers else _never
            sending = asyncio.create_task(answer(writer))
            leaving = asyncio.create_task(reader.read(1))
            done, _ = await asyncio.wait({sending, leaving}, return_when=asyncio.FIRST_COMPLETED)
            if leaving in done:
                self.closed.set()
            for task in (sending, leaving):
                task.cancel()
            await asyncio.gather(sending, leaving, return_exceptions=True)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _never(_writer: asyncio.StreamWriter) -> None:
    await asyncio.Event().wait()


@asynccontextmanager
async def _raw_app(
    stack_urls: StackUrls, unique: str, *answers: Writer
) -> AsyncIterator[tuple[Chat, RawProvider]]:
    raw = RawProvider(list(answers))
    raw._server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
    try:
        async with _app(stack_urls, unique, raw, **FAST) as chat:  # type: ignore[arg-type]
            yield chat, raw
    finally:
        raw._server.close()


def _head(status: str, *headers: str) -> bytes:
    return ("\r\n".join([f"HTTP/1.1 {status}", *headers]) + "\r\n\r\n").encode()


def _hello(usage: tuple[int, int] | None = (11, 4)) -> bytes:
    return b"".join(openai_stream(usage=usage))


async def _reply_of(chat: Chat, auth: dict[str, str], chat_id: str) -> dict[str, Any]:
    """The last message of the chat as ``GET /api/chats/{id}`` shows it (once final)."""
    await _until_final(chat, chat_id)
    shown = await chat.client.get(f"/api/chats/{chat_id}", headers=auth)
    assert shown.status_code == 200, shown.text
    message: dict[str, Any] = shown.json()["messages"][-1]
    return message


async def _asked(chat: Chat, model: str = MODEL) -> tuple[dict[str, str], dict[str, Any], list]:
    user = await chat.world.register(f"u{uuid.uuid4().hex[:8]}")
    started = await chat.start(user["auth"], model=model, message=f"Q {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])
    return user["auth"], started, events


# === HTTP framings other than chunked =============================================================
async def test_a_stream_framed_by_content_length_is_read_and_recorded(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    body = _hello(usage=(13, 5))

    async def answer(writer: asyncio.StreamWriter) -> None:
        head = _head("200 OK", "Content-Type: text/event-stream", f"Content-Length: {len(body)}")
        writer.write(head)
        for i in range(0, len(body), 37):  # in odd pieces, lines split apart
            writer.write(body[i : i + 37])
            await writer.drain()
        await asyncio.Event().wait()  # the connection stays open (keep-alive)

    async with _raw_app(stack_urls, unique, answer) as (chat, raw):
        auth, started, events = await _asked(chat)
        assert events[-1][1] == "done", events[-1]
        assert _text(events) == "Hello, world!"
        message = await _reply_of(chat, auth, started["chatId"])
        assert (message["status"], message["content"]) == ("complete", "Hello, world!")
        assert (message["usage"]["promptTokens"], message["usage"]["completionTokens"]) == (13, 5)
        assert len(raw.requests) == 1


async def test_a_stream_ended_by_closing_the_connection_after_done_is_complete(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """No Content-Length, no chunked: HTTP/1.1's third framing, the body ends when the
    connection closes (a llama.cpp server or a simple proxy)."""
    body = _hello()

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(_head("200 OK", "Content-Type: text/event-stream", "Connection: close"))
        writer.write(body)
        await writer.drain()
        writer.close()

    async with _raw_app(stack_urls, unique, answer) as (chat, _raw):
        auth, started, events = await _asked(chat)
        assert events[-1][1] == "done", events[-1]
        assert _text(events) == "Hello, world!"
        message = await _reply_of(chat, auth, started["chatId"])
        assert message["status"] == "complete"
        assert message["usage"]["completionTokens"] == 4


async def test_a_close_framed_stream_cut_before_its_end_fails_the_reply_keeping_its_text(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Closing the connection ends a close-framed body cleanly at the HTTP level: only the
    missing finish reason and ``[DONE]`` tell that the reply was cut."""
    body = b"".join(openai_stream(["part", "ial"], usage=None, done=False)[:3])

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(_head("200 OK", "Content-Type: text/event-stream", "Connection: close"))
        writer.write(body)
        await writer.drain()
        writer.close()

    async with _raw_app(stack_urls, unique, answer) as (chat, raw):
        auth, started, events = await _asked(chat)
        assert _text(events) == "partial"
        assert events[-1][1] == "error", events[-1]
        message = await _reply_of(chat, auth, started["chatId"])
        assert (message["status"], message["content"]) == ("failed", "partial")
        assert message["usage"]["completionTokens"] > 0  # its text is charged (estimated)
        assert len(raw.requests) == 1  # never retried after text


# === a server that accepts and never answers ======================================================
async def test_a_server_that_never_sends_a_status_line_times_out_and_is_disconnected(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _raw_app(stack_urls, unique, _never) as (chat, raw):
        auth, started, events = await _asked(chat)
        assert events[-1][1] == "error", events[-1]
        message = await _reply_of(chat, auth, started["chatId"])
        assert (message["status"], message["content"]) == ("failed", "")
        # the first-token timeout is not retried (it would multiply the wait)
        assert len(raw.requests) == 1
        await asyncio.wait_for(raw.closed.wait(), timeout=10)
        usage = await chat.client.get("/api/usage", headers=auth)
        assert usage.status_code == 200, usage.text
        total = usage.json()["total"]
        assert (total["promptTokens"], total["completionTokens"], total["costUsd"]) == (0, 0, 0)


# === refusals: never retried, never leaking the key ===============================================
@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_refusal_echoing_the_key_is_not_retried_and_leaks_nothing(
    chat: Chat, status: int, capfd: pytest.CaptureFixture[str]
) -> None:
    """OpenAI's 401 message echoes the key sent: it reaches no event, no saved message, no
    log line, and the refusal is not asked again (the key or the model is at fault)."""
    said = f"Incorrect API key provided: {API_KEY}. You can find your key at platform"
    chat.provider.script(Reply(status=status, body=openai_error(said, "invalid_api_key")))
    auth, started, events = await _asked(chat)
    assert events[-1][1] == "error", events[-1]
    assert API_KEY not in json.dumps(events)
    assert str(status) in events[-1][2]["message"]
    message = await _reply_of(chat, auth, started["chatId"])
    assert message["status"] == "failed"
    assert API_KEY not in json.dumps(message)
    assert len(chat.provider.requests) == 1
    logged = "".join(capfd.readouterr())
    assert "/api/chat/start" in logged  # the app's log is captured here
    assert API_KEY not in logged


@pytest.mark.parametrize("stream", [False, True])
async def test_v1_a_refusal_echoing_the_key_is_an_openai_error_without_it(
    chat: Chat, stream: bool
) -> None:
    said = f"Incorrect API key provided: {API_KEY}."
    chat.provider.script(Reply(status=401, body=openai_error(said, "invalid_api_key")))
    key = await _v1_key(chat)
    answer = await chat.client.post(
        "/v1/chat/completions", json=_v1_body(stream=stream), headers=key
    )
    assert API_KEY not in answer.text
    assert answer.status_code == 502, answer.text  # the provider's key, not the caller's
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "provider_error")
    assert "HTTP 401" in error["message"]
    assert len(chat.provider.requests) == 1


# === Retry-After ==================================================================================
async def test_a_429_with_retry_after_as_a_near_future_date_is_retried_and_answers(
    chat: Chat,
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=1), usegmt=True)
    limited = Reply(
        status=429, headers={"Retry-After": when},
        body=openai_error("Rate limit reached", "rate_limit_exceeded", "requests"),
    )  # fmt: skip
    chat.provider.script(limited)
    auth, started, events = await _asked(chat)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world!"
    assert len(chat.provider.requests) == 2
    message = await _reply_of(chat, auth, started["chatId"])
    assert message["usage"]["completionTokens"] == 4  # counted once


# === a 200 that is not a stream ===================================================================
async def test_a_200_html_page_fails_the_reply_with_nothing_cached(chat: Chat) -> None:
    page = b"<html><head><title>Login</title></head><body>captive portal</body></html>"
    html = Reply(chunks=[page], headers={"Content-Type": "text/html"})
    chat.provider.script(html, html, html, html)
    user = await chat.world.register(f"u{uuid.uuid4().hex[:8]}")
    prompt = f"Q {uuid.uuid4()}"
    started = await chat.start(user["auth"], model=MODEL, message=prompt)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "error", events[-1]
    assert "captive" not in events[-1][2]["message"]
    message = await _reply_of(chat, user["auth"], started["chatId"])
    assert (message["status"], message["content"]) == ("failed", "")
    asked = len(chat.provider.requests)
    again = await chat.start(user["auth"], model=MODEL, message=prompt)
    events = await chat.events(again["sessionId"])
    assert len(chat.provider.requests) > asked  # not served from a cache


async def test_anthropic_a_whole_message_in_json_is_read_as_its_stream(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    """A gateway in front of Anthropic (the base URL is configurable) that ignores
    ``stream: true`` answers one Messages object as application/json, as OpenAI-compatible
    servers sometimes do (which the OpenAI adapter reads as its stream)."""
    chat, anthropic = claude
    whole = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "Whole answer"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 2},
    }  # fmt: skip
    anthropic.script(Reply(body=whole), Reply(body=whole))
    auth, started, events = await _asked(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Whole answer"
    message = await _reply_of(chat, auth, started["chatId"])
    assert message["model"] == HAIKU


# === usage chunks that leave counts out ===========================================================
@pytest.mark.parametrize(
    "said",
    [{"total_tokens": 15}, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, {}],
)
async def test_a_usage_chunk_without_counts_has_both_estimated_and_priced(
    chat: Chat, said: dict[str, int]
) -> None:
    """A compatible server's usage chunk that leaves the counts out (or says 0) must not
    record a streamed reply as free: both counts are estimated, and priced."""
    pieces = openai_stream(usage=None, done=False)
    chunk = openai_chunk({}) | {"choices": [], "usage": said}
    chat.provider.script(Reply(chunks=[*pieces, sse(chunk), sse("[DONE]")]))
    auth, started, events = await _asked(chat)
    assert events[-1][1] == "done", events[-1]
    done = events[-1][2]
    assert done["usage"]["promptTokens"] > 0
    assert done["usage"]["completionTokens"] > 0
    assert done["costUsd"] > 0
    message = await _reply_of(chat, auth, started["chatId"])
    assert message["usage"]["promptTokens"] == done["usage"]["promptTokens"]
    assert message["costUsd"] == pytest.approx(done["costUsd"])


async def test_anthropic_usage_at_zero_in_message_delta_keeps_the_counts_said_before(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    chat, anthropic = claude
    pieces = anthropic_stream(("Hi",), input_tokens=30, output_tokens=7)
    ending = {
        "type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 7, "input_tokens": 0, "cache_read_input_tokens": None},
    }  # fmt: skip
    pieces[-2] = sse(ending, "message_delta")
    anthropic.script(Reply(chunks=pieces))
    _auth, _started, events = await _asked(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    usage = events[-1][2]["usage"]
    assert (usage["promptTokens"], usage["completionTokens"]) == (30, 7)


async def test_anthropic_an_error_event_before_any_text_is_a_failed_reply_or_a_fallback(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    chat, anthropic = claude
    pieces = [*anthropic_stream()[:3], sse(anthropic_error("invalid_request_error"), "error")]
    anthropic.script(Reply(chunks=pieces))
    auth, started, events = await _asked(chat, HAIKU)
    message = await _reply_of(chat, auth, started["chatId"])
    assert len(anthropic.requests) == 1
    assert events[-1][1] == "done", events[-1]  # the fallback answered
    assert message["model"] == MODEL


async def _twice(chat: Chat, *scripted: Reply) -> tuple[list, list, dict[str, Any]]:
    chat.provider.script(*scripted)
    user = await chat.world.register(f"u{uuid.uuid4().hex[:8]}")
    prompt = f"Q {uuid.uuid4()}"
    first = await chat.start(user["auth"], model=MODEL, message=prompt)
    events1 = await chat.events(first["sessionId"])
    message = await _reply_of(chat, user["auth"], first["chatId"])
    second = await chat.start(user["auth"], model=MODEL, message=prompt)
    events2 = await chat.events(second["sessionId"])
    return events1, events2, message


# === replies with no text at all ==================================================================
def _done_only() -> list[bytes]:
    """``[DONE]`` and nothing else: no text, no finish reason, no usage."""
    return [sse("[DONE]")]


def _tool_call_only() -> list[bytes]:
    """A call of a tool the chat never offered (a misbehaving server), and no text."""
    return openai_tool_stream([ScriptedCall("call_1", "get_weather", ['{"c', 'ity": "P"}'])])


@pytest.mark.parametrize("upstream", [_done_only, _tool_call_only])
async def test_a_reply_without_any_text_is_never_served_from_the_cache(
    chat: Chat, upstream: Callable[[], list[bytes]]
) -> None:
    """An upstream answer with no text for the reader (``[DONE]`` alone, without even a finish
    reason; or only a call of a tool the chat flow never offered, which it ignores) is no
    successful completion worth keeping: cached, it answers the same question with an empty
    reply for an hour without the provider being asked again."""
    events1, events2, message = await _twice(chat, Reply(chunks=upstream()))
    assert (message["content"], events1[-1][2]["cached"]) == ("", False)
    assert len(chat.provider.requests) == 2  # the second identical question reached it
    assert events2[-1][2]["cached"] is False


# === Anthropic content at a block's start =========================================================
async def test_anthropic_text_carried_by_a_blocks_start_is_not_lost(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    """``content_block_start`` carries the whole block as it begins (its ``text``): Anthropic
    sends it empty, but it is a full content block, and Anthropic's SDKs start the block from
    it; a compatible server (the base URL is configurable) may put the first words there."""
    chat, anthropic = claude
    pieces = anthropic_stream(("world",))
    start = {
        "type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": "Hello, "},
    }  # fmt: skip
    pieces[1] = sse(start, "content_block_start")
    anthropic.script(Reply(chunks=pieces))
    auth, started, events = await _asked(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    assert _text(events) == "Hello, world"
    message = await _reply_of(chat, auth, started["chatId"])
    assert message["content"] == "Hello, world"


async def test_anthropic_thinking_carried_by_a_blocks_start_is_not_lost(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    chat, anthropic = claude
    pieces = anthropic_thinking_stream((" Then answer.",), ("Hi",))
    first = {"type": "thinking", "thinking": "Greet first.", "signature": ""}
    pieces[1] = sse(
        {"type": "content_block_start", "index": 0, "content_block": first},
        "content_block_start",
    )
    anthropic.script(Reply(chunks=pieces))
    auth, started, events = await _asked(chat, HAIKU)
    assert events[-1][1] == "done", events[-1]
    message = await _reply_of(chat, auth, started["chatId"])
    assert (message["content"], message["reasoning"]) == ("Hi", "Greet first. Then answer.")


@pytest.mark.parametrize("stream", [False, True])
async def test_v1_anthropic_tool_input_given_at_the_blocks_start_is_kept(
    claude: tuple[Chat, FakeProviderServer], stream: bool
) -> None:
    """A ``tool_use`` block may come whole in its ``content_block_start`` (its ``input``
    filled, no ``input_json_delta``): a gateway replaying a non-streamed answer as a stream
    does so. The call's arguments must be that input, not ``{}`` (a client would run the tool
    without its arguments)."""
    chat, anthropic = claude
    pieces = anthropic_tool_stream([ScriptedCall("toolu_1", "get_weather", ())])
    whole = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "P"}}
    at = next(i for i, p in enumerate(pieces) if b'"tool_use", "id"' in p)
    pieces[at] = sse(
        {"type": "content_block_start", "index": 0, "content_block": whole},
        "content_block_start",
    )
    pieces = [p for p in pieces if b'"partial_json": ""' not in p]
    anthropic.script(Reply(chunks=pieces))
    key = await _v1_key(chat)
    body = _v1_body(HAIKU, stream=stream, tools=[WEATHER])
    if not stream:
        answer = await chat.client.post("/v1/chat/completions", json=body, headers=key)
        assert answer.status_code == 200, answer.text
        [call] = answer.json()["choices"][0]["message"]["tool_calls"]
        arguments = call["function"]["arguments"]
    else:
        arguments = ""
        async with chat.client.stream(
            "POST", "/v1/chat/completions", json=body, headers=key
        ) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                data = line.removeprefix("data: ")
                if not line.startswith("data: ") or data == "[DONE]":
                    continue
                for choice in json.loads(data)["choices"]:
                    for piece in choice["delta"].get("tool_calls") or ():
                        arguments += piece["function"].get("arguments") or ""
    assert json.loads(arguments) == {"city": "P"}


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize("stream", [False, True])
async def test_v1_a_server_that_never_answers_is_an_openai_502_and_is_disconnected(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, stream: bool
) -> None:
    """Streamed or not, the status waits for the first token: a client gets an OpenAI error
    with a 5xx (its SDK raises), not a 200 stream that fails."""
    async with _raw_app(stack_urls, unique, _never) as (chat, raw):
        key = await _v1_key(chat)
        answer = await chat.client.post(
            "/v1/chat/completions", json=_v1_body(stream=stream), headers=key
        )
        assert answer.status_code == 502, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        error = answer.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "provider_error")
        assert "first token" in error["message"]
        assert len(raw.requests) == 1
        await asyncio.wait_for(raw.closed.wait(), timeout=10)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_200_html_page_is_reported_as_not_an_event_stream(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, stream: bool
) -> None:
    """A base URL that reaches a web page (a single-page app answering any path with its
    index.html, a captive portal) answers 200 text/html. The error says "stream cut before
    it finished", which sends an operator after the network; what was wrong is the answer
    itself: not an event stream (its content type)."""
    page = b"<!doctype html><html><body><div id=app></div></body></html>"

    async def html(writer: asyncio.StreamWriter) -> None:
        head = _head("200 OK", "Content-Type: text/html", f"Content-Length: {len(page)}")
        writer.write(head + page)
        await writer.drain()
        await asyncio.Event().wait()

    async with _raw_app(stack_urls, unique, html, html) as (chat, _raw):
        key = await _v1_key(chat)
        answer = await chat.client.post(
            "/v1/chat/completions", json=_v1_body(stream=stream), headers=key
        )
        assert answer.status_code == 502, answer.text
        said = answer.json()["error"]["message"]
        assert "stream cut" not in said
        assert "text/html" in said


# === a complete reply, then silence ===============================================================
async def test_a_reply_complete_but_for_done_then_silence_is_saved_complete(chat: Chat) -> None:
    """The adapter reads a stream cut (closed) after the finish reason and the usage chunk,
    the last one before ``[DONE]``, as the complete answer it is ("nothing of the reply is
    missing"). A server that, at the same point, neither sends ``[DONE]`` nor closes (a
    proxy holding the connection) has sent the same complete answer: the idle timeout must
    not turn it into a failed reply."""
    chat.provider.script(Reply(chunks=openai_stream(done=False), hold=True))
    auth, started, events = await _asked(chat)
    assert _text(events) == "Hello, world!"
    assert events[-1][1] == "done", events[-1]
    message = await _reply_of(chat, auth, started["chatId"])
    assert (message["status"], message["finishReason"]) == ("complete", "stop")


async def test_anthropic_a_reply_complete_but_for_message_stop_then_silence_is_complete(
    claude: tuple[Chat, FakeProviderServer],
) -> None:
    """As its cut after ``message_delta`` (the stop reason and final counts) is read as
    complete, so is a connection left silent at that point."""
    chat, anthropic = claude
    anthropic.script(Reply(chunks=anthropic_stream(("Hi",), stop=False), hold=True))
    auth, started, events = await _asked(chat, HAIKU)
    assert _text(events) == "Hi"
    assert events[-1][1] == "done", events[-1]
    message = await _reply_of(chat, auth, started["chatId"])
    assert (message["status"], message["finishReason"]) == ("complete", "end_turn")


# === error bodies without end =====================================================================
async def _endless_body(writer: asyncio.StreamWriter, status: str, kind: str) -> None:
    writer.write(_head(status, f"Content-Type: {kind}", "Transfer-Encoding: chunked"))
    piece = b'{"error": {"message": "' + b"x" * 16_000
    while True:  # a body that never ends (a broken proxy streaming its log)
        writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.005)
        piece = b"x" * 16_000


async def test_a_500_whose_body_never_ends_is_a_retried_server_error_not_a_timeout(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """An error body is read whole (``response.aread()``) with no cap, where an event of the
    stream is capped (``EventTooLarge``): a 500 whose body never ends is held in memory until
    the first-token timeout fires, and then reported as a silent provider ("sent nothing")
    and not retried, though it answered a 500 at once. Read a bounded prefix of an error
    body, and the 500 is the retryable server error it is."""

    async def broken(writer: asyncio.StreamWriter) -> None:
        await _endless_body(writer, "500 Internal Server Error", "application/json")

    async with _raw_app(stack_urls, unique, broken, broken) as (chat, raw):
        _auth, _started, events = await _asked(chat)
        assert events[-1][1] == "error", events[-1]
        assert "HTTP 500" in events[-1][2]["message"], events[-1]
        assert len(raw.requests) == 2  # a 5xx before any token is retried


async def test_a_200_json_answer_that_never_ends_is_refused_as_too_large(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """A 200 application/json answer (a server ignoring ``stream: true``) is read whole with
    no cap either: one that never ends is held until the first-token timeout, and the error
    then says the provider "sent nothing". Past a bound it is an answer too large to read
    (as an event of a stream past ``MAX_EVENT_CHARS`` is)."""

    async def broken(writer: asyncio.StreamWriter) -> None:
        await _endless_body(writer, "200 OK", "application/json")

    async with _raw_app(stack_urls, unique, broken, broken) as (chat, _raw):
        _auth, _started, events = await _asked(chat)
        assert events[-1][1] == "error", events[-1]
        assert "sent nothing" not in events[-1][2]["message"], events[-1]
