"""Consume a provider stream until it ends or the session's stop is requested."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from whalli.domain.model.errors import ProviderError
from whalli.ports.chat_model import ChatModel, CompletionRequest, StreamDelta, StreamEnd
from whalli.ports.reply_stream import ReplyStream


class StopWatch:
    """Polls the session's stop flag (shared by every API process) every ``poll_s`` seconds,
    the first time ``poll_s`` after it starts.

    With ``abandon_after_s`` set, a reply nobody has been reading for that long is stopped too
    (by default generation runs to the end, so a reader who comes back finds the answer saved).
    """

    def __init__(
        self, stream: ReplyStream, session_id: str, poll_s: float,
        abandon_after_s: float | None = None,
    ) -> None:  # fmt: skip
        self._stream, self._session_id, self._poll_s = stream, session_id, poll_s
        self._abandon_after = abandon_after_s
        self._closed = asyncio.Event()

    def close(self) -> None:
        """End ``wait`` at its next step. Used instead of cancelling the task: a cancellation
        landing inside a Redis command can be absorbed by the client, leaving a poller behind."""
        self._closed.set()

    async def wait(self) -> bool:
        """True once a stop was requested (or the reply was abandoned), False once closed; a
        store that does not answer counts as 'not yet'."""
        loop = asyncio.get_running_loop()
        unread_since: float | None = None
        while True:
            # Wait first: a reply shorter than one interval costs no poll at all, and none
            # sits next to its first token. (A timeout scope, not wait_for: no task per wait.)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):
                    await self._closed.wait()
            if self._closed.is_set():
                return False
            if await self._stop_due():
                return True
            if self._abandon_after is not None:
                unread_since = await self._unread_since(loop, unread_since)
                if unread_since is not None and loop.time() - unread_since >= self._abandon_after:
                    return True

    async def _stop_due(self) -> bool:
        # Whatever goes wrong with the flag store must not abort a reply: count it as 'not yet'.
        with contextlib.suppress(Exception):
            return await self._stream.stop_requested(self._session_id)
        return False

    async def _unread_since(
        self, loop: asyncio.AbstractEventLoop, since: float | None
    ) -> float | None:
        with contextlib.suppress(Exception):
            if await self._stream.readers(self._session_id) > 0:
                return None
            return loop.time() if since is None else since
        return since


async def stream_until_stopped(
    model: ChatModel,
    request: CompletionRequest,
    on_delta: Callable[[str], Awaitable[None]],
    watch: StopWatch,
) -> StreamEnd | None:
    """The provider's ``StreamEnd``, or ``None`` when stopped first.

    Stopping cancels the consumer, which closes the provider iterator and so its HTTP request.
    The stop poller is closed, not cancelled (see ``StopWatch.close``), and never awaited
    without a bound.
    Raises ``ProviderError`` when the provider fails or ends without its final event.
    """

    async def consume() -> StreamEnd:
        events = model.stream(request)
        try:
            async for event in events:
                if isinstance(event, StreamDelta):
                    if event.text:
                        await on_delta(event.text)
                elif isinstance(event, StreamEnd):
                    return event
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()
        raise ProviderError("The provider ended the stream without finishing it.")

    consumer = asyncio.create_task(consume())
    stopper = asyncio.create_task(watch.wait())
    try:
        await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        watch.close()
        consumer.cancel()
        raise
    watch.close()  # the poller ends after its current check; never wait on it unbounded
    await asyncio.wait({stopper}, timeout=5)
    if not stopper.done():
        stopper.cancel()
    if consumer.done():
        return consumer.result()
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError, ProviderError):
        await consumer
    return None
