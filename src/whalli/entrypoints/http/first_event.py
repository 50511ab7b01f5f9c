"""Waiting for a reply's first event without holding a streamed response silent.

A streamed ``/v1`` completion waits for its first event before it answers, so that a refusal
(plan, model, a provider down) still gets its own status rather than a 200 stream holding an
error. A reasoning model may think for minutes before that event, and proxies cut a connection
that stays silent: nginx after 60 s, Cloudflare after 100 s. So the wait is bounded: after
``hold_s`` the 200 stream opens anyway and sends a comment (which clients ignore) at once and
every ``heartbeat_s`` until the first event arrives; an error from then on can only be told in
the stream, as after any first chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Generic, TypeVar

from whalli.entrypoints.http.sse import encode_comment

T = TypeVar("T")

KEEP_ALIVE = encode_comment()


class FirstEvent(Generic[T]):
    """The first event of ``events``, awaited in a task of its own so that the wait can end
    without cancelling the generator (a cancelled ``anext`` would end the reply)."""

    def __init__(self, events: AsyncGenerator[T, None]) -> None:
        self._events = events
        self._task: asyncio.Future[T] = asyncio.ensure_future(anext(events))

    async def within(self, hold_s: float) -> bool:
        """Whether the first event (or the error that came instead) is in within ``hold_s``.
        Cancelled meanwhile (the client left), the wait for the event is cancelled too."""
        try:
            await asyncio.wait((self._task,), timeout=hold_s)
        except BaseException:
            await self.close()
            raise
        return self._task.done()

    def done(self) -> bool:
        return self._task.done()

    def result(self) -> T:
        """The first event, or the error raised instead of it; only once ``within`` said so."""
        return self._task.result()

    async def silence(self, heartbeat_s: float) -> AsyncIterator[bytes]:
        """A comment now and every ``heartbeat_s`` until the first event (or its error) is in."""
        yield KEEP_ALIVE
        while not (await self.within(heartbeat_s)):
            yield KEEP_ALIVE

    async def close(self) -> None:
        """Stop waiting for the event and close the generator (idempotent)."""
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        elif not self._task.cancelled():
            self._task.exception()  # retrieved: a closed stream's error is not logged again
        await self._events.aclose()
