"""A busy JSON ``POST`` route served in plain ASGI, below Litestar, in its plain case.

Through Litestar a request passes routing, the request object and its header parsing, the
guard, dependency injection and the signature model before its use case starts, and the
response machinery after: about a third of the time Whalli added to a ``/v1`` reply's first
token (a stamps probe, 2026-12-01). ``PlainRoute`` reads what the plain case needs from the raw
scope and body and leaves the rest to the Litestar route, which answers it as before.

The plain case: a JSON body of known length, at most ``LEAN_BODY_MAX``, with one bearer or
``X-API-Key`` credential. A request without a credential the guard accepts is handed over
before its body is read (the guard refuses it at its headers), and one whose client leaves
while its body is read is handed over with what came (the guard counts it, as it always did).
A subclass's ``answer`` raises ``HandOver`` for anything else it does not serve (the body
replayed to the route), which it must do before it counts the request.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, NamedTuple

from litestar import Request
from litestar._asgi.utils import is_valid_host
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPRequestEvent, Receive, ReceiveMessage, Scope, Send

from whalli.domain.model.errors import Unauthenticated
from whalli.domain.model.principal import Principal
from whalli.entrypoints.http.deps import AppContainer
from whalli.entrypoints.http.paths import routed_path
from whalli.entrypoints.http.problems import handle_exception
from whalli.entrypoints.http.rate_limit import count_request
from whalli.entrypoints.http.security import API_KEY_HEADER, authenticate_and_count, credential_in

# Larger bodies (images as data URLs) go through Litestar, which streams them to its 32 MiB limit.
LEAN_BODY_MAX = 1024 * 1024
_API_KEY = API_KEY_HEADER.encode()


class HandOver(Exception):
    """The Litestar route answers this request."""


class PlainHeaders(NamedTuple):
    credential: str
    cache_control: str  # its lines as one list (RFC 9110, 5.3), as the route reads them
    accept: str  # the same


class RouteBelow:
    """ASGI: ``method path`` answered by ``serve``, every other request passed to ``app``
    (Litestar, or the next route below it), as is one whose ``Host`` the router refuses."""

    path = ""
    method = "POST"

    def __init__(self, app: ASGIApp, container: AppContainer) -> None:
        self.app = app
        self.container = container

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: every other request goes on without a frame of this.
        if (
            scope["type"] == ScopeType.HTTP
            and routed_path(scope) == self.path
            and scope["method"] == self.method
            and valid_host(scope)
        ):
            return self.serve(scope, receive, send)
        return self.app(scope, receive, send)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class PlainRoute(RouteBelow):
    """A JSON ``POST`` answered by ``answer`` in the plain case, anything else by ``app``."""

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        plain = plain_headers(scope)
        if plain is None:  # (without a credential the guard takes: refused at its headers)
            await self.app(scope, receive, send)
            return
        body, left = await read_body(receive)
        replay = Replay(body, receive, left)
        if left is not None:  # the client left before its body was whole: as it always was,
            await self.app(scope, replay, send)  # the route counts it (its guard came first)
            return
        try:
            await self.answer(scope, replay, send, body, plain)
        except HandOver:
            await self.app(scope, replay, send)

    async def answer(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, plain: PlainHeaders
    ) -> None:
        """Answer the request, or raise ``HandOver`` before counting it."""
        raise HandOver

    async def counted(
        self, scope: Scope, receive: Receive, send: Send, plain: PlainHeaders
    ) -> Principal | None:
        """Who the request's credential is, the request counted against their budget as the
        guard counts it (``authenticate_and_count``); ``None`` when refused, the refusal
        answered by ``refused``. A refused credential is answered as the guard answers it:
        its user's count given back, the client's address charged instead (a 429 when that
        budget is spent), then the 401."""
        authenticate = await self.container.authenticate()
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope, receive)
        scope["path_template"] = self.path  # the route label of the request's metrics
        try:
            try:
                return await authenticate_and_count(
                    connection, authenticate, plain.credential, limited=True
                )
            except Unauthenticated:
                await count_request(connection, None)  # the client's address pays for it
                raise
        except Exception as e:  # as the route's exception handler answers it
            await self.refused(scope, receive, send, e)
            return None

    async def refused(self, scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
        """Answer ``error`` as the route's exception handler does."""
        request: Request[Any, Any, Any] = Request(scope, receive)
        response = handle_exception(request, error)
        await response.to_asgi_response(None, request)(scope, receive, send)


def valid_host(scope: Scope) -> bool:
    """Is the request's ``Host`` one Litestar's router takes (its first, as the router reads
    it)? The router refuses any other with a 400 before routing, so the route below Litestar
    leaves such a request to it."""
    for name, value in scope["headers"]:
        if name == b"host":
            return is_valid_host(value)
    return True


def plain_headers(scope: Scope) -> PlainHeaders | None:
    """The headers of a request in the plain case, else ``None``: the body's length known and
    small, JSON, and one credential in a scheme the guard accepts."""
    length: int | None = None
    json_body = False
    authorizations: list[str] = []
    api_keys: list[str] = []
    cache_control: list[str] = []
    accept: list[str] = []
    for name, value in scope["headers"]:
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name == b"content-type":
            if json_body or value.split(b";", 1)[0].strip().lower() != b"application/json":
                return None
            json_body = True
        elif name == b"authorization":
            authorizations.append(value.decode("latin-1"))
        elif name == _API_KEY:
            api_keys.append(value.decode("latin-1"))
        elif name == b"cache-control":
            cache_control.append(value.decode("latin-1"))
        elif name == b"accept":
            accept.append(value.decode("latin-1"))
        elif name in (b"transfer-encoding", b"expect", b"content-encoding"):
            return None
    if length is None or not json_body or length > LEAN_BODY_MAX:
        return None
    try:
        credential = credential_in(authorizations, api_keys)
    except Unauthenticated:
        return None
    if credential is None:
        return None
    return PlainHeaders(credential, ", ".join(cache_control), ", ".join(accept))


async def read_body(receive: Receive) -> tuple[bytes, ReceiveMessage | None]:
    """The body, and the message that cut it short (the client left) or ``None``."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), message
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), None


class Replay:
    """``receive`` for the Litestar route after the body was read: the body (and what cut it
    short, if the client left), then the rest."""

    __slots__ = ("_body", "_left", "_receive")

    def __init__(self, body: bytes, receive: Receive, left: ReceiveMessage | None) -> None:
        self._body: bytes | None = body
        self._left, self._receive = left, receive

    async def __call__(self) -> ReceiveMessage:
        body = self._body
        if body is not None:
            self._body = None
            message: HTTPRequestEvent = {
                "type": "http.request", "body": body, "more_body": self._left is not None
            }  # fmt: skip
            return message
        left = self._left
        if left is not None:
            self._left = None
            return left
        return await self._receive()
