"""A streamed ``POST /v1/chat/completions`` served in plain ASGI, below Litestar.

This is the request the OpenAI-compatible API exists for, and the one where proxies are
compared (LiteLLM's and Portkey's overheads are measured on it). Through Litestar it passed
routing, the request object and its header parsing, the guard, dependency injection and the
signature model before the use case started, and the response machinery before its first
chunk: about a third of the time Whalli added to its first token (a throwaway stamps probe,
2026-12-01). Here one coroutine reads the body, authenticates and counts the request with the
guard's own ``authenticate_and_count``, and runs the controller's own code
(``openai_compat``: ``_command``, ``FirstEvent``, ``_sse``, ``_after_silence``) with the same
use case.

Only the plain case is served here: a JSON body of known length, at most ``LEAN_BODY_MAX``,
that decodes strictly as a streamed ``ChatCompletionRequest`` whose command builds, with one
bearer or ``X-API-Key`` credential that names its user. Anything else is handed to the
Litestar route unchanged, with the body replayed, before anything was counted (so it answers
exactly as before: its statuses, bodies and OpenAPI entry). A request without a credential
the guard accepts is handed over before its body is read (the guard refuses it at its
headers), and one whose client leaves while its body is read is handed over with what came
(the guard counts it, as it always did). After the count, a refused credential is handed
over too, its count taken back first, as the guard itself does before it counts the client's
address; any other error before the response starts is answered here by the route's own
exception handler (``handle_openai_exception``), since the request was counted and the use
case may have run. One after it goes to the server, as Litestar's does: never a second
response start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Awaitable
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPRequestEvent, Receive, ReceiveMessage, Scope, Send

from whalli.domain.model.errors import Unauthenticated
from whalli.domain.services.chat.complete import CompleteChat
from whalli.entrypoints.http import openai_wire as wire
from whalli.entrypoints.http.controllers.openai_compat import (
    _after_silence,
    _command,
    _Completion,
    _sse,
)
from whalli.entrypoints.http.deps import AppContainer
from whalli.entrypoints.http.first_event import FirstEvent
from whalli.entrypoints.http.lean_stream import send_chunks, send_until_gone
from whalli.entrypoints.http.openai_errors import handle_openai_exception
from whalli.entrypoints.http.security import API_KEY_HEADER, authenticate_and_count, credential_in
from whalli.entrypoints.http.sse import HEADERS, MEDIA_TYPE

COMPLETIONS_PATH = "/v1/chat/completions"
# Larger bodies (images as data URLs) go through Litestar, which streams them to its 32 MiB limit.
LEAN_BODY_MAX = 1024 * 1024
_API_KEY = API_KEY_HEADER.encode()
# as Litestar sends the route's ``LeanStream``: its headers, then the media type
_START_HEADERS = [
    *((name.lower().encode(), value.encode()) for name, value in HEADERS.items()),
    (b"content-type", f"{MEDIA_TYPE}; charset=utf-8".encode()),
]
_decoder = msgspec.json.Decoder(wire.ChatCompletionRequest)


class _HandOver(Exception):
    """The Litestar route answers this request."""


class CompletionRoute:
    """ASGI: a plain streamed completion answered here, everything else passed to ``app``."""

    def __init__(self, app: ASGIApp, container: AppContainer) -> None:
        self.app = app
        self.container = container

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: every other request goes on without a frame of this.
        if (
            scope["type"] == ScopeType.HTTP
            and scope["path"] == COMPLETIONS_PATH
            and scope["method"] == "POST"
        ):
            return self._serve(scope, receive, send)
        return self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        plain = _plain_headers(scope)
        if plain is None:  # (without a credential the guard takes: refused at its headers)
            await self.app(scope, receive, send)
            return
        credential, cache_control = plain
        body, left = await _read_body(receive)
        replay = _Replay(body, receive, left)
        if left is not None:  # the client left before its body was whole: as it always was,
            await self.app(scope, replay, send)  # the route counts it (its guard came first)
            return
        try:
            await self._answer(scope, replay, send, body, credential, cache_control)
        except _HandOver:
            await self.app(scope, replay, send)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        credential: str,
        cache_control: str,
    ) -> None:
        try:  # nothing counted yet: whatever is not plain, the route answers
            data = _decoder.decode(body)
            if not data.stream:
                raise _HandOver
            command = _command(None, data, cache_control)  # refused: the route says why
            authenticate = await self.container.authenticate()
        except Exception as e:
            raise _HandOver from e
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope, receive)
        scope["path_template"] = COMPLETIONS_PATH  # the route label of the request's metrics
        try:
            principal = await authenticate_and_count(
                connection, authenticate, credential, limited=True
            )
        except Unauthenticated:  # its user's count given back: the guard refuses it, charging
            raise _HandOver from None  # the client's address
        except Exception as e:  # as the route's exception handler answers it
            await _refuse(scope, receive, send, e)
            return
        command = msgspec.structs.replace(command, user_id=principal.user_id, user=principal.user)
        try:
            chunks = await self._chunks(command, data)
        except Exception as e:
            await _refuse(scope, receive, send, e)
            return
        # From here an error cannot be answered (the response has begun): it goes to the
        # server, which ends the connection, as Litestar's does with one raised once a
        # response started (never a second response start)
        await send({"type": "http.response.start", "status": 200, "headers": list(_START_HEADERS)})
        await send_until_gone(send_chunks(chunks, send), receive)

    async def _chunks(
        self, command: CompleteChat, data: wire.ChatCompletionRequest
    ) -> AsyncGenerator[bytes, None]:
        """The controller's streamed answer (``OpenAICompatController.create``), its first
        event awaited (a refusal then raised here)."""
        complete_chat = await self.container.complete_chat()
        events = complete_chat.stream(command)
        include_usage = data.stream_options is not None and data.stream_options.include_usage
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def opened() -> _Completion:  # once the model answering is known (a fallback?)
            model = complete_chat.answered_by or data.model
            return _Completion(completion_id, created, model, include_usage)

        heartbeat_s = self.container.settings.chat_heartbeat_s
        waiting = FirstEvent(events)
        if await waiting.within(heartbeat_s):
            return _sse(opened(), waiting.result(), events)  # raises a refusal here
        return _after_silence(waiting, heartbeat_s, opened, events)


def _plain_headers(scope: Scope) -> tuple[str, str] | None:
    """(credential, Cache-Control) of a request in the plain case, else ``None``: the body's
    length known and small, JSON, and one credential in a scheme the guard accepts."""
    length: int | None = None
    json_body = False
    authorizations: list[str] = []
    api_keys: list[str] = []
    cache_control: list[str] = []
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
    # its lines as one list (RFC 9110, 5.3), as the route reads them
    return credential, ", ".join(cache_control)


async def _read_body(receive: Receive) -> tuple[bytes, ReceiveMessage | None]:
    """The body, and the message that cut it short (the client left) or ``None``."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), message
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), None


class _Replay:
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


async def _refuse(scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
    request: Request[Any, Any, Any] = Request(scope, receive)
    response = handle_openai_exception(request, error)
    await response.to_asgi_response(None, request)(scope, receive, send)
