"""Hunt S26: a stream's last chunk (``LastChunk``) from an iterator that is not a generator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from whalli.entrypoints.http.lean_stream import LastChunk, LeanStreamingResponse


class Frames:
    """An async iterable (not an iterator): each ``async for`` over it runs a generator."""

    def __init__(self) -> None:
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        try:
            yield b"a"
            yield LastChunk(b"end")
        finally:
            self.closed = True


async def test_the_generator_an_iterable_gave_is_closed_at_its_last_chunk() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        await asyncio.Event().wait()  # the client stays

    frames = Frames()
    response = LeanStreamingResponse(iterator=frames, media_type="text/event-stream")
    await response.send_body(send, receive)

    assert [(m["body"], m["more_body"]) for m in sent] == [(b"a", True), (b"end", False)]
    assert frames.closed  # at once, as a generator's, not when collected
