"""``_http.sse_post`` and the adapters on it against raw servers on loopback: an answer's
body is read within bounds (an error body's first ``MAX_ERROR_BODY`` bytes, a whole JSON
answer up to its limit), a 2xx answer that is no event stream is named for what it is, and a
reply whose end came is complete though its connection then stays silent."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from tests.support.raw_http import client, read_request, serving
from whalli.adapters.ai import StreamPolicy
from whalli.adapters.ai._http import MAX_ERROR_BODY, sse_post, whole_limit
from whalli.adapters.ai._sse import MAX_EVENT_CHARS, SseEvent
from whalli.adapters.ai.anthropic import AnthropicChatModel
from whalli.adapters.ai.openai import OpenAIChatModel
from whalli.domain.model.chats import MessageRole, TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.ports.chat_model import CompletionRequest, PromptMessage, StreamDelta, StreamEnd

# long enough that a reply read as complete only by waiting out a timeout fails its test
POLICY = StreamPolicy(max_attempts=1, first_token_timeout=30.0, idle_timeout=30.0)
REQUEST = CompletionRequest(
    model="m", messages=(PromptMessage(role=MessageRole.USER, content="Hi"),)
)


def head(status: str, content_type: str, *extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def endless(writer: asyncio.StreamWriter, status: str, content_type: str) -> None:
    """A chunked body that never ends (a broken proxy streaming its log)."""
    writer.write(head(status, content_type, "Transfer-Encoding: chunked"))
    piece = b'{"error": {"code": "server_error", "message": "' + b"x" * 16_000
    while True:
        writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await writer.drain()
        piece = b"x" * 16_000


async def events_of(url: str, **options: Any) -> list[SseEvent]:
    async with client() as http, asyncio.timeout(30):  # (a body read without end: failed)
        answer = sse_post(http, url, provider="p", headers={}, body=b"{}", policy=POLICY, **options)
        return [event async for event in answer]


def served(
    answer: bytes, *, hold: bool = False
) -> AbstractAsyncContextManager[tuple[str, list[int]]]:
    """A server answering one request with ``answer``, then, with ``hold``, silent."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        if hold:
            await reader.read(1)  # silent until the client leaves

    return serving(handler)


async def test_a_5xx_whose_body_never_ends_is_read_in_part_and_is_a_retryable_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await endless(writer, "500 Internal Server Error", "application/json")

    async with serving(handler) as (url, _):
        with pytest.raises(ProviderError, match=r"failed \(HTTP 500\)") as raised:
            await events_of(url)
    error = raised.value
    assert (error.details["kind"], error.details["upstream_status"]) == ("server_error", 500)
    assert error.retryable


async def test_an_error_body_is_not_waited_for_past_its_first_bytes() -> None:
    """A body said to be longer than it comes (a proxy stalled mid-body) is not waited on."""
    said = 2 * MAX_ERROR_BODY
    answer = head("503 Service Unavailable", "application/json", f"Content-Length: {said}")
    async with served(answer + b"x" * (MAX_ERROR_BODY + 100), hold=True) as (url, _):
        with pytest.raises(ProviderError, match=r"failed \(HTTP 503\)") as raised:
            await events_of(url)
    assert raised.value.retryable


async def test_a_whole_json_answer_past_its_limit_is_too_large_to_read() -> None:
    body = json.dumps({"choices": [], "padding": "x" * 2000}).encode()
    answer = head("200 OK", "application/json", f"Content-Length: {len(body)}") + body
    async with served(answer) as (url, _):
        with pytest.raises(ProviderError, match=r"more than 1000 bytes: too large") as raised:
            await events_of(url, whole=lambda d: [json.dumps(d)], max_whole_bytes=1000)
    assert (raised.value.details["kind"], raised.value.retryable) == ("protocol", False)


async def test_a_whole_json_answer_that_never_ends_is_too_large_to_read() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await endless(writer, "200 OK", "application/json")

    async with serving(handler) as (url, _):
        with pytest.raises(ProviderError, match=r"too large to read"):
            await events_of(url, whole=lambda d: [json.dumps(d)], max_whole_bytes=100_000)


async def test_a_whole_json_answer_within_its_limit_is_read() -> None:
    body = json.dumps({"said": "x" * 900}).encode()
    answer = head("200 OK", "application/json", f"Content-Length: {len(body)}") + body
    async with served(answer) as (url, _):
        events = await events_of(url, whole=lambda d: [d["said"]], max_whole_bytes=len(body))
    assert events == [SseEvent("message", "x" * 900)]


def test_a_whole_answers_limit_grows_with_what_the_reply_may_hold_up_to_an_events() -> None:
    assert whole_limit(1000) == MAX_ERROR_BODY + 2000
    assert whole_limit(10**9) == MAX_EVENT_CHARS


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/xhtml+xml"])
async def test_a_web_page_is_not_an_event_stream_and_is_not_retried(content_type: str) -> None:
    page = b"<!doctype html><html><body>data: {}</body></html>"
    answer = head("200 OK", content_type, f"Content-Length: {len(page)}") + page
    async with served(answer, hold=True) as (url, _):
        with pytest.raises(ProviderError, match=r"not an event stream: check its base URL") as e:
            await events_of(url)
    media_type = content_type.partition(";")[0]
    assert f"answered {media_type}," in e.value.message
    assert (e.value.details["kind"], e.value.retryable) == ("protocol", False)


async def test_a_body_of_another_type_holding_no_event_is_not_an_event_stream() -> None:
    answer = head("200 OK", "application/octet-stream", "Content-Length: 4") + b"\x00\x01ok"
    async with served(answer) as (url, _):
        with pytest.raises(ProviderError, match=r"answered application/octet-stream, not an"):
            await events_of(url)


async def test_text_plain_holding_events_is_still_read_as_events() -> None:
    body = b"data: one\n\n"
    answer = head("200 OK", "text/plain", f"Content-Length: {len(body)}") + body
    async with served(answer) as (url, _):
        assert await events_of(url) == [SseEvent("message", "one")]


async def test_an_empty_event_stream_is_still_a_cut_stream() -> None:
    answer = head("200 OK", "text/event-stream", "Content-Length: 0")
    async with served(answer) as (url, _), client() as http:
        model = OpenAIChatModel(http, base_url=url, policy=POLICY)
        with pytest.raises(ProviderError, match=r"stream cut") as raised:
            await reply_of(model)
    assert raised.value.retryable


def sse(data: dict[str, Any], name: str | None = None) -> bytes:
    return (f"event: {name}\n" if name else "").encode() + f"data: {json.dumps(data)}\n\n".encode()


async def reply_of(model: OpenAIChatModel | AnthropicChatModel) -> list[Any]:
    return [event async for event in model.stream(REQUEST)]


def chunked(*pieces: bytes) -> bytes:
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces)


async def test_openai_a_reply_held_silent_after_its_finish_and_usage_is_complete() -> None:
    """The usage chunk after the finish reason is the last before ``[DONE]``."""
    chunk: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
    body = chunked(sse(chunk), sse(finish), sse(usage))
    answer = head("200 OK", "text/event-stream", "Transfer-Encoding: chunked") + body
    async with served(answer, hold=True) as (url, _), client() as http:
        model = OpenAIChatModel(http, base_url=url, policy=POLICY)
        events = await reply_of(model)
    assert events == [
        StreamDelta(text="Hi"),
        StreamEnd(finish_reason="stop", usage=TokenUsage(prompt_tokens=7, completion_tokens=2)),
    ]


async def test_anthropic_a_reply_held_silent_after_message_delta_is_complete() -> None:
    message = {"type": "message", "content": [], "usage": {"input_tokens": 7, "output_tokens": 1}}
    block = {"type": "text", "text": ""}
    delta = {"type": "text_delta", "text": "Hi"}
    body = chunked(
        sse({"type": "message_start", "message": message}, "message_start"),
        sse({"type": "content_block_start", "index": 0, "content_block": block}),
        sse({"type": "content_block_delta", "index": 0, "delta": delta}),
        sse({"type": "content_block_stop", "index": 0}),
        sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}),
    )
    answer = head("200 OK", "text/event-stream", "Transfer-Encoding: chunked") + body
    async with served(answer, hold=True) as (url, _), client() as http:
        model = AnthropicChatModel(http, api_key="k", base_url=url, policy=POLICY)
        events = await reply_of(model)
    assert events[1:] == [
        StreamDelta(text="Hi"),
        StreamEnd(finish_reason="end_turn", usage=TokenUsage(prompt_tokens=7, completion_tokens=1)),
    ]


async def test_anthropic_a_whole_json_message_is_read_as_its_stream() -> None:
    whole = {
        "type": "message", "content": [{"type": "text", "text": "Whole answer"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 2},
    }  # fmt: skip
    body = json.dumps(whole).encode()
    answer = head("200 OK", "application/json", f"Content-Length: {len(body)}") + body
    async with served(answer) as (url, _), client() as http:
        model = AnthropicChatModel(http, api_key="k", base_url=url, policy=POLICY)
        events = await reply_of(model)
    assert events[1:] == [
        StreamDelta(text="Whole answer"),
        StreamEnd(finish_reason="end_turn", usage=TokenUsage(prompt_tokens=9, completion_tokens=2)),
    ]
