"""A streamed response that holds less per open stream than Litestar's ``Stream``.

Litestar sends a ``Stream``'s body inside an anyio task group: per open stream a TaskGroup, two
cancel scopes, a second task with its own copy of the context, and their wrappers, all kept for
as long as the stream is open. An SSE client holds its stream open for a whole reply and longer,
and a server holds thousands. ``LeanStream`` sends the body in the request's own task and waits
for the client's disconnect in one plain asyncio task; a disconnect cancels the sending exactly
as before (the iterator's ``finally`` blocks run, and the response ends without an error), and
a body sent to its end cancels the wait.

An iterator that knows which chunk is its last yields it as a :class:`LastChunk`: it goes out
with the end of the body in one ``http.response.body`` message (``more_body`` false), so the
server writes it and the chunked body's terminator in one system call, and the client is woken
once, not twice (an SSE reply's final event, a ``/v1`` stream's ``[DONE]``). The iterator is
closed at once, just before it is sent (``send_chunks`` says why).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from litestar.enums import MediaType
from litestar.response import Stream
from litestar.response.streaming import ASGIStreamingResponse
from litestar.utils.helpers import get_enum_string_value

if TYPE_CHECKING:
    from litestar.app import Litestar
    from litestar.background_tasks import BackgroundTask, BackgroundTasks
    from litestar.connection import Request
    from litestar.datastructures import Cookie
    from litestar.response.base import ASGIResponse
    from litestar.types import Receive, Send, TypeEncodersMap


class LeanStream(Stream):
    """``Stream``, answered by :class:`LeanStreamingResponse` (see the module docstring)."""

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        # As ``Stream.to_asgi_response`` (Litestar 2), but for the class it builds.
        headers = {**headers, **self.headers} if headers is not None else self.headers
        cookies = self.cookies if cookies is None else itertools.chain(self.cookies, cookies)
        iterator = self.iterator
        if callable(iterator):
            iterator = iterator()
        return LeanStreamingResponse(
            background=self.background or background,
            content_length=0,
            cookies=cookies,
            encoded_headers=encoded_headers,
            encoding=self.encoding,
            headers=headers,
            is_head_response=is_head_response,
            iterator=iterator,
            media_type=get_enum_string_value(media_type or self.media_type or MediaType.JSON),
            status_code=self.status_code or status_code,
        )


class LastChunk(bytes):
    """A stream's last chunk (see the module docstring): nothing is sent after it."""

    __slots__ = ()


class LeanStreamingResponse(ASGIStreamingResponse):
    __slots__ = ()

    async def send_body(self, send: Send, receive: Receive) -> None:
        await send_until_gone(send_chunks(self.iterator, send, self.encoding), receive)


async def send_chunks(
    chunks: AsyncIterable[bytes | str], send: Send, encoding: str = "utf-8"
) -> None:
    """Each chunk as an ``http.response.body`` message, then the body's end: with a
    :class:`LastChunk` (the iterator closed just before it), else in a message of its own once
    the iterator is done.

    The iterator is closed before the body's end is sent, as it ended before it when it ran to
    its end: once the body has ended, uvicorn answers ``receive()`` with ``http.disconnect`` at
    once, which ``send_until_gone`` takes for the client leaving, and would cancel ``finally``
    blocks still awaiting (a reader's bookkeeping, a reply's close)."""
    iterator = aiter(chunks)  # (itself for a generator; what ``async for`` would iterate)
    async for chunk in iterator:
        body = chunk if isinstance(chunk, bytes) else chunk.encode(encoding)
        if isinstance(chunk, LastChunk):
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()  # its ``finally`` blocks, as at its end
            await send({"type": "http.response.body", "body": bytes(body), "more_body": False})
            return
        await send({"type": "http.response.body", "body": body, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_until_gone(sending_body: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run ``sending_body`` in this task until it ends or the client disconnects (a
    disconnect cancels it, and ends this quietly)."""
    sending = asyncio.current_task()
    if sending is None:
        sending_body.close()
        raise RuntimeError("a response is sent inside a task")
    cancelling = sending.cancelling()
    listener = asyncio.get_running_loop().create_task(_disconnected(receive))
    on_left = _OnLeft(sending)
    listener.add_done_callback(on_left)
    try:
        await sending_body
    except asyncio.CancelledError:
        if on_left.fired and sending.uncancel() <= cancelling:
            return  # the client went away: the stream ends here, quietly
        raise
    finally:
        on_left.sending = None  # a disconnect noticed from now on cancels nothing
        listener.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _OnLeft:
    """When the client's disconnect was received (or receiving failed), cancel the task still
    sending to it."""

    __slots__ = ("fired", "sending")

    def __init__(self, sending: asyncio.Task[Any]) -> None:
        self.sending: asyncio.Task[Any] | None = sending
        self.fired = False

    def __call__(self, listener: asyncio.Task[None]) -> None:
        if listener.cancelled():
            return  # the body was sent to its end
        listener.exception()  # retrieved: a failed receive counts as the client gone
        if self.sending is not None:
            self.fired = True
            self.sending.cancel()
