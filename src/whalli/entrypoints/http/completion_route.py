"""A streamed ``POST /v1/chat/completions`` served in plain ASGI, below Litestar.

This is the request the OpenAI-compatible API exists for, and the one where proxies are
compared (LiteLLM's and Portkey's overheads are measured on it). A plain one (plain_route.py:
a small JSON body, one credential) whose body decodes strictly as a streamed
``ChatCompletionRequest`` and whose command builds is authenticated and counted with the
guard's own ``authenticate_and_count`` and answered with the controller's own code
(``openai_compat``: ``_command``, ``FirstEvent``, ``_sse``, ``_after_silence``) and the same
use case. Anything else is handed to the Litestar route unchanged, with the body replayed,
before anything was counted (so it answers exactly as before: its statuses, bodies and OpenAPI
entry).

A credential refused after the count is answered as the guard answers it (its user's count
taken back, the client's address charged, then the 401: ``PlainRoute.counted``), and any other
error before the response starts by the route's own exception handler
(``handle_openai_exception``), since the request was counted and the use case may have run.
One after it goes to the server, as Litestar's does: never a second response start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from litestar import Request
from litestar.types import Receive, Scope, Send

from whalli.domain.services.chat.complete import CompleteChat
from whalli.entrypoints.http import openai_wire as wire
from whalli.entrypoints.http.controllers.openai_compat import (
    _after_silence,
    _command,
    _Completion,
    _sse,
)
from whalli.entrypoints.http.first_event import FirstEvent
from whalli.entrypoints.http.lean_stream import send_chunks, send_until_gone
from whalli.entrypoints.http.openai_errors import handle_openai_exception
from whalli.entrypoints.http.plain_route import HandOver, PlainHeaders, PlainRoute
from whalli.entrypoints.http.sse import HEADERS, MEDIA_TYPE

COMPLETIONS_PATH = "/v1/chat/completions"
# as Litestar sends the route's ``LeanStream``: its headers, then the media type
_START_HEADERS = [
    *((name.lower().encode(), value.encode()) for name, value in HEADERS.items()),
    (b"content-type", f"{MEDIA_TYPE}; charset=utf-8".encode()),
]
_decoder = msgspec.json.Decoder(wire.ChatCompletionRequest)


class CompletionRoute(PlainRoute):
    """ASGI: a plain streamed completion answered here, everything else passed to ``app``."""

    path = COMPLETIONS_PATH

    async def answer(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, plain: PlainHeaders
    ) -> None:
        try:  # nothing counted yet: whatever is not plain, the route answers
            data = _decoder.decode(body)
            if not data.stream:
                raise HandOver
            command = _command(None, data, plain.cache_control)  # refused: the route says why
        except Exception as e:
            raise HandOver from e
        principal = await self.counted(scope, receive, send, plain)
        if principal is None:
            return
        command = msgspec.structs.replace(
            command, user_id=principal.user_id, user=principal.user,
            credential=principal.credential,
        )  # fmt: skip
        try:
            chunks = await self._chunks(command, data)
        except Exception as e:
            await self.refused(scope, receive, send, e)
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

    async def refused(self, scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
        """Answered as the route's exception handler does: OpenAI's error shape."""
        request: Request[Any, Any, Any] = Request(scope, receive)
        response = handle_openai_exception(request, error)
        await response.to_asgi_response(None, request)(scope, receive, send)
