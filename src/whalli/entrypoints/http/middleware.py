"""Request context middleware: request id, access log line and HTTP metrics, in plain ASGI.

It wraps the whole Litestar handler (outside routing and the exception handler), so unknown
routes and errors get a request id and are counted too. It never touches response bodies, only
the ``http.response.start`` message, so streamed (SSE) responses pass through unbuffered.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    Scope,
    Send,
)

from whalli.adapters.prometheus.metrics import HttpMetrics
from whalli.entrypoints.http.paths import client_path, routed_path
from whalli.entrypoints.http.rate_limit import decision_headers

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_STATE_KEY = "request_id"
UNMATCHED_ROUTE = "unmatched"
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
# Anything else is one label value, so a client cannot create unbounded metric series.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = structlog.get_logger("whalli.access")


def request_id_of(scope: Mapping[str, Any]) -> str | None:
    state = scope.get("state")
    value = state.get(REQUEST_ID_STATE_KEY) if isinstance(state, Mapping) else None
    return value if isinstance(value, str) else None


def _incoming_request_id(scope: HTTPScope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _VALID_REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def _readable_query(query: bytes) -> bool:
    """Is the query string UTF-8 (what every parser of it assumes)? ASCII, nearly always."""
    if query.isascii():
        return True
    try:
        query.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unreadable(scope: HTTPScope) -> tuple[int, str, str] | None:
    """(status, code, detail) for a request no route could read, else None: raw query bytes
    that are not UTF-8 (uvicorn refuses them itself; another server may pass them on), or a
    body in a content coding (gzip) we do not decode, which would be read as what it is not
    (an upload stored compressed)."""
    if not _readable_query(scope["query_string"]):
        detail = "The query string is not valid UTF-8 (percent-encode its bytes)."
        return 400, "bad_request", detail
    for name, value in scope["headers"]:
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            coding = value.decode("latin-1")[:40]
            detail = f"Content-Encoding {coding!r} is not supported: send the body as it is."
            return 415, "unsupported_content_encoding", detail
    return None


async def _refuse(
    scope: HTTPScope, request_id: str, send: Send, status: int, code: str, detail: str
) -> None:
    """The refusal as a problem, or in OpenAI's error shape under ``/v1``."""
    body: dict[str, Any]
    if routed_path(scope).startswith("/v1/"):
        media = b"application/json"
        body = {"error": {"message": detail, "type": "invalid_request_error",
                          "code": code, "param": None}}  # fmt: skip
    else:
        media = b"application/problem+json"
        body = {
            "type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail, "code": code, "instance": client_path(scope), "requestId": request_id,
        }  # fmt: skip
    content = json.dumps(body).encode()
    headers = [(b"content-type", media), (b"content-length", str(len(content)).encode())]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": headers,
    }
    await send(start)
    await send({"type": "http.response.body", "body": content, "more_body": False})


def _is_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value[:17].lower() == b"text/event-stream"
    return False


class RequestContextMiddleware:
    """Per HTTP request: honour or mint ``X-Request-ID``, echo it, bind it for logging, write one
    access line and record count, latency and in-flight metrics by route template.

    ``route_of`` turns Litestar's matched path template into the label (see ``create_app``).
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, route_of: Callable[[str], str]) -> None:
        self.app = app
        self.metrics = metrics
        self.route_of = route_of

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: the HTTP one's frame would sit under every open stream.
        if scope["type"] == ScopeType.HTTP:
            return self._http(scope, receive, send)
        return self.app(scope, receive, send)

    async def _http(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        request_id = _incoming_request_id(scope)
        scope.setdefault("state", {})[REQUEST_ID_STATE_KEY] = request_id
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500  # what the client sees if the app fails before sending anything
        streamed = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, streamed
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))  # (read twice: not an iterator)
                streamed = _is_event_stream(headers)
                limits = decision_headers(scope)
                message["headers"] = [*headers, *limits, header]
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        in_flight = self.metrics.requests_in_flight
        in_flight.inc()
        started = time.perf_counter()
        try:
            refusal = _unreadable(scope)
            if refusal is None:
                await self.app(scope, receive, send_with_request_id)
            else:
                await _refuse(scope, request_id, send_with_request_id, *refusal)
        finally:
            duration = time.perf_counter() - started
            in_flight.dec()
            self._record(scope, status, duration, streamed)
            structlog.contextvars.reset_contextvars(**tokens)

    def _record(self, scope: HTTPScope, status: int, duration: float, streamed: bool) -> None:
        method = scope["method"]
        method_label = method if method in _KNOWN_METHODS else "OTHER"
        template = scope.get("path_template")
        route = self.route_of(template) if template else UNMATCHED_ROUTE
        self.metrics.requests_total.labels(method_label, route, str(status)).inc()
        # a stream lasts as long as what it carries: not a request's latency (same route label)
        durations = (
            self.metrics.stream_duration_seconds
            if streamed
            else self.metrics.request_duration_seconds
        )
        durations.labels(method_label, route).observe(duration)
        access_log.info(
            "request",
            method=method,
            route=route,
            status=status,
            duration_ms=round(duration * 1000, 2),
        )
