"""``POST /api/chat/start`` served in plain ASGI, below Litestar.

Every chat reply begins here, and its time is part of the reply's time to first token (the
reply's stream is attached after it answers). A plain start (plain_route.py: a small JSON body,
one credential) whose body decodes strictly as a ``ChatStartBody`` and whose command builds is
authenticated and counted with the guard's own ``authenticate_and_count``, and answered with
the controller's own code (``controllers.chat``: ``start_command``, ``started``) and the same
use case: the session as JSON, or (``Accept: text/event-stream``) the reply itself as events.
Anything else is handed to the Litestar route unchanged, with the body replayed, before
anything was counted, so it answers exactly as before (its statuses, problem bodies and
OpenAPI entry).

A credential refused after the count is answered as the guard answers it (its user's count
taken back, the client's address charged, then the 401: ``PlainRoute.counted``), and any other
error before the response starts (a plan, a model, a 429, a chat not found) by the app's own
exception handler (``problems.handle_exception``), since the request was counted and the use
case may have run. One after the events began goes to the server, as Litestar's does: never
a second response start.
"""

from __future__ import annotations

import msgspec
from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send

from whalli.entrypoints.http.controllers.chat import (
    ChatStartBody,
    start_command,
    start_turn,
    started,
)
from whalli.entrypoints.http.lean_stream import send_chunks, send_until_gone
from whalli.entrypoints.http.paths import root_of
from whalli.entrypoints.http.plain_route import HandOver, PlainHeaders, PlainRoute
from whalli.entrypoints.http.reply_events import (
    RETRY,
    SSE_RAW_HEADERS,
    accepts_events,
    reply_frames,
)
from whalli.entrypoints.http.sse import json_event

START_PATH = "/api/chat/start"
_decoder = msgspec.json.Decoder(ChatStartBody)
_encoder = msgspec.json.Encoder()
# as Litestar sends the route's JSON answer
_JSON_TYPE = (b"content-type", b"application/json")


class StartRoute(PlainRoute):
    """ASGI: a plain chat start answered here, everything else passed to ``app``."""

    path = START_PATH

    async def answer(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, plain: PlainHeaders
    ) -> None:
        container = self.container
        try:  # nothing counted yet: whatever is not plain, the route answers
            command = start_command(_decoder.decode(body))  # refused: the route says why
        except Exception as e:
            raise HandOver from e
        # the route label of its metrics from now on: a start stopped while it waits for its
        # turn (a shutdown) is counted under its route, as one stopped inside is
        scope["path_template"] = self.path
        # a burst of starts runs a few at a time, authentication included (admission.py)
        async with start_turn(container, command):
            principal = await self.counted(scope, receive, send, plain)
            if principal is None:
                return
            try:
                answer, session = await started(container, command, principal, root_of(scope))
                reader = await container.read_reply() if accepts_events(plain.accept) else None
            except Exception as e:
                await self.refused(scope, receive, send, e)
                return
        if reader is None:
            content = _encoder.encode(answer)
            await send(_json_start(len(content)))
            await send({"type": "http.response.body", "body": content, "more_body": False})
            return
        # From here an error cannot be answered (the response has begun): it goes to the
        # server, which ends the connection, as Litestar's does (never a second response start)
        await send({"type": "http.response.start", "status": 201, "headers": list(SSE_RAW_HEADERS)})
        frames = reply_frames(reader, session.id, None, RETRY + json_event("session", answer))
        await send_until_gone(send_chunks(frames, send), receive)


def _json_start(length: int) -> HTTPResponseStartEvent:
    headers = [_JSON_TYPE, (b"content-length", str(length).encode())]
    return {"type": "http.response.start", "status": 201, "headers": headers}
