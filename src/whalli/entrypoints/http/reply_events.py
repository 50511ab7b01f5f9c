"""A chat reply as Server-Sent Events: its frames, and whether a request asks for them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request

from whalli.adapters.prometheus.chat_metrics import sse_connections
from whalli.domain.model.replies import (
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    ReplyEvent,
    TokenEvent,
    is_final,
)
from whalli.domain.services.chat.read_reply import ReadReplyHandler
from whalli.entrypoints.http.lean_stream import LastChunk
from whalli.entrypoints.http.sse import HEADERS, MEDIA_TYPE, encode_comment, json_event

RETRY = b"retry: 2000\n\n"  # how soon a browser's EventSource reconnects after a drop
# The content type as a header: the start route's JSON media type would override a Stream's.
SSE_HEADERS = {
    **HEADERS, "Connection": "keep-alive", "content-type": f"{MEDIA_TYPE}; charset=utf-8",
}  # fmt: skip
# the same, as a raw ASGI response start sends them (the routes below Litestar)
SSE_RAW_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SSE_HEADERS.items()]


def sse_frame(event_id: str, event: ReplyEvent) -> bytes:
    if isinstance(event, TokenEvent):
        return json_event("token", {"delta": event.delta}, event_id)
    if isinstance(event, ReasoningEvent):
        return json_event("reasoning", {"delta": event.delta}, event_id)
    if isinstance(event, DoneEvent):
        payload = {
            "messageId": str(event.message_id), "cached": event.cached,
            "usage": {"promptTokens": event.prompt_tokens,
                      "completionTokens": event.completion_tokens,
                      "cachedPromptTokens": event.cached_prompt_tokens,
                      "cacheWriteTokens": event.cache_write_tokens,
                      "reasoningTokens": event.reasoning_tokens},
            "finishReason": event.finish_reason, "costUsd": event.cost_usd,
            "status": event.status,
        }  # fmt: skip
        return json_event("done", payload, event_id)
    assert isinstance(event, ErrorEvent)
    payload = {"code": event.code, "message": event.message}
    if event.message_id is not None:
        payload["messageId"] = str(event.message_id)
    return json_event("error", payload, event_id)


def sse_frames(batch: list[tuple[str, ReplyEvent]]) -> bytes:
    if len(batch) == 1:
        return sse_frame(*batch[0])
    return b"".join([sse_frame(event_id, event) for event_id, event in batch])


def wants_events(request: Request[Any, Any, Any]) -> bool:
    """Does the Accept header name ``text/event-stream``, with a quality above 0? Every line
    of it is read: lines are one list (RFC 9110, 5.3)."""
    return accepts_events(", ".join(request.headers.getall("accept", [])))


def accepts_events(accept: str) -> bool:
    """``wants_events`` of an Accept header's value."""
    for entry in accept.split(","):
        media, *params = (part.strip().lower() for part in entry.split(";"))
        if media == MEDIA_TYPE:
            return _quality(params) > 0
    return False


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0  # a malformed weight is not a request for events
    return 1.0


async def reply_frames(
    reader: ReadReplyHandler, session_id: str, after: str | None, head: bytes
) -> AsyncIterator[bytes]:
    """``head``, then the reply's events after ``after``, counted as an open SSE connection."""
    gauge = sse_connections()
    gauge.inc()
    batches = reader.events(session_id, after)
    try:
        yield head
        async for batch in batches:
            # whatever arrived together goes out as one write; the final event with the end
            if batch is None:
                yield encode_comment()
            elif batch and is_final(batch[-1][1]):
                yield LastChunk(sse_frames(batch))
            else:
                yield sse_frames(batch)
    finally:
        gauge.dec()
        # closed now, not when collected, when this is closed at its LastChunk (the reader's
        # bookkeeping runs in its ``finally``); after its end or an error, a no-op
        await batches.aclose()
