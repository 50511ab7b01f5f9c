"""CORS: which browser pages may call the API (``Settings.cors_allowed_origins``).

ASGI, around every route, the reply stream's included (``stream_route``, below Litestar, which
an ``EventSource`` at the web app's origin reads). A request without ``Origin`` (every client
but a browser's cross-origin call) passes with one look at its headers. From an allowed origin:
- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, before
  routing and authentication: any method, the request headers it names, for 10 minutes;
- any other request's answer says the origin may read it, and which of its headers
  (``Retry-After``, ``X-Request-ID``...).
No credentials mode: nothing rides on cookies (bearer tokens and API keys), so a page can only
use the credentials it holds. From any other origin nothing is added (the browser refuses the
page the answer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    Scope,
    Send,
)

_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
_EXPOSED = b"Retry-After, X-Request-ID, WWW-Authenticate, Content-Disposition, Location"
_MAX_AGE = b"600"


class CorsMiddleware:
    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self.app = app
        self._any = "*" in origins
        self._origins = frozenset(origin.encode() for origin in origins)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: a request without an Origin goes on without a frame of this.
        if scope["type"] == ScopeType.HTTP:
            origin = _header(scope["headers"], b"origin")
            if origin is not None and (self._any or origin in self._origins):
                return self._cross_origin(origin, scope, receive, send)
        return self.app(scope, receive, send)

    async def _cross_origin(
        self, origin: bytes, scope: HTTPScope, receive: Receive, send: Send
    ) -> None:
        allowed = b"*" if self._any else origin
        headers = scope["headers"]
        if scope["method"] == "OPTIONS" and _header(headers, b"access-control-request-method"):
            answer = [
                (b"access-control-allow-origin", allowed),
                (b"access-control-allow-methods", _METHODS),
                (b"access-control-max-age", _MAX_AGE),
                (b"vary", b"Origin"),
                (b"content-length", b"0"),
            ]
            asked = _header(headers, b"access-control-request-headers")
            if asked:
                answer.append((b"access-control-allow-headers", asked))
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": 204,
                "headers": answer,
            }
            await send(start)
            body: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": b"",
                "more_body": False,
            }
            await send(body)
            return

        async def readable(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"access-control-allow-origin", allowed),
                    (b"access-control-expose-headers", _EXPOSED),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        await self.app(scope, receive, readable)


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None
