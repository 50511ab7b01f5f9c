"""``GET /api/chat/stream`` served in plain ASGI, below Litestar, while a reply is streamed.

A browser holds this request open for a whole reply (and thousands of them are open at once),
and everything on the path to the handler stays in memory as long: through Litestar that is
its app, exception middleware, router and route coroutines, the request with its decoded
headers and query, and the response object, about 7 KiB per open stream. Here the route takes
one coroutine: it reads ``sessionId``/``lastEventId`` and the credential headers from the raw
scope, asks the same use cases as the Litestar route (``ChatStreamController.stream``), and
sends the reply as ``LeanStream`` does.

Only a request that opens a stream is answered here. Anything else (a malformed query, a
credential that fails, a session not found, a resume after the final event, any error) is
handed to the Litestar route unchanged, which answers it exactly as before (its problem body,
its status, its OpenAPI entry); the reads made here are idempotent, so doing them twice costs
only time, on paths that are rare.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send

from whalli.domain.model.replies import parse_event_id
from whalli.domain.services.auth.authenticate import Authenticate
from whalli.domain.services.chat.attach_stream import AttachStream
from whalli.domain.services.chat.read_reply import ReadReplyHandler
from whalli.entrypoints.http.lean_stream import send_chunks, send_until_gone
from whalli.entrypoints.http.plain_route import RouteBelow
from whalli.entrypoints.http.reply_events import RETRY, SSE_RAW_HEADERS, reply_frames
from whalli.entrypoints.http.security import API_KEY_HEADER, credential_in

STREAM_PATH = "/api/chat/stream"
MAX_SESSION_ID = 256  # as the Litestar route's query parameter allows
_CREDENTIAL_HEADERS = (b"authorization", API_KEY_HEADER.encode())


class StreamRoute(RouteBelow):
    """ASGI: ``GET /api/chat/stream`` opened here, everything else passed to ``app``."""

    path = STREAM_PATH
    method = "GET"

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        opened = await self._open(scope)
        if opened is None:
            await self.app(scope, receive, send)  # Litestar answers, as it always did
            return
        reader, session_id, after = opened
        del opened
        scope["path_template"] = STREAM_PATH  # the route label of the request's metrics
        await send(_start())  # (no local: nothing of it stays under the open stream)
        frames = reply_frames(reader, session_id, after, RETRY)
        await send_until_gone(send_chunks(frames, send), receive)

    async def _open(self, scope: Scope) -> tuple[ReadReplyHandler, str, str | None] | None:
        """The reader, session id and resume point of a stream to send, or ``None`` when the
        Litestar route must answer instead."""
        query = _query(scope["query_string"])
        if query is None:
            return None
        session_value = query.get("sessionId")
        if session_value is None or len(session_value) > MAX_SESSION_ID:
            return None
        headers: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            if name in _CREDENTIAL_HEADERS or name == b"last-event-id":
                headers.setdefault(name, []).append(value)
        try:
            credential = credential_in(
                [v.decode("latin-1") for v in headers.get(b"authorization", ())],
                [v.decode("latin-1") for v in headers.get(_CREDENTIAL_HEADERS[1], ())],
            )
            user_id = None
            if credential is not None:
                authenticate = await self.container.authenticate()
                user_id = (await authenticate.execute(Authenticate(credential=credential))).user_id
            attach = await self.container.attach_stream()
            session = await attach.execute(AttachStream(session_id=session_value, user_id=user_id))
            reader = await self.container.read_reply()
            sent_after = headers.get(b"last-event-id")
            # as the route: the header (when not empty), else the query parameter
            after = (sent_after[0].decode("latin-1") if sent_after else None) or query.get(
                "lastEventId"
            )
            if after is not None:
                parse_event_id(after)  # InvalidInput: the route's 422
                if await reader.ended_at(session.id, after):
                    return None  # the route's 204
        except Exception:  # the route answers it: a problem, or a 500 it logs
            return None
        return reader, session.id, after


def _query(raw: bytes) -> dict[str, str] | None:
    """The query's parameters; ``None`` when one of ours comes twice (the route decides)."""
    found: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        if name in found and name in ("sessionId", "lastEventId"):
            return None
        found.setdefault(name, value)
    return found


def _start() -> HTTPResponseStartEvent:
    return {"type": "http.response.start", "status": 200, "headers": list(SSE_RAW_HEADERS)}
