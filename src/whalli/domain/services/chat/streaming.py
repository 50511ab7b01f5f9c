"""Consume a provider stream until it ends or the session's stop is requested."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from whalli.domain.model.errors import ProviderError, ServiceUnavailable
from whalli.ports.chat_model import ChatModel, CompletionRequest, StreamDelta, StreamEnd
from whalli.ports.reply_stream import ReplyStream


class StopWatch:
    """Polls the session's stop flag (shared by every API process) every ``poll_s`` seconds.

    With ``abandon_after_s`` set, a reply nobody has been reading for that long is stopped too
    (by default generation runs to the end, so a reader who comes back finds the answer saved).
    """

    def __init__(
        self, stream: ReplyStream, session_id: str, poll_s: float,
        abandon_after_s: float | None = None,
    ) -> None:  # fmt: skip
        self._stream, self._session_id, self._poll_s = stream, session_id, poll_s
        self._abandon_after = abandon_after_s

    async def wait(self) -> None:
        """Return once a stop was requested (or the reply was abandoned); a store that does not
        answer counts as 'not yet'."""
        loop = asyncio.get_running_loop()
        unread_since: float | None = None
        while True:
            with contextlib.suppress(ServiceUnavailable):
                if await self._stream.stop_requested(self._session_id):
                    return
                if self._abandon_after is not None:
                    if await self._stream.readers(self._session_id) > 0:
                        unread_since = None
                    elif unread_since is None:
                        unread_since = loop.time()
                    elif loop.time() - unread_since >= self._abandon_after:
                        return
            await asyncio.sleep(self._poll_s)


async def stream_until_stopped(
    model: ChatModel,
    request: CompletionRequest,
    on_delta: Callable[[str], Awaitable[None]],
    watch: StopWatch,
) -> StreamEnd | None:
    """The provider's ``StreamEnd``, or ``None`` when stopped first.

    Stopping cancels the consumer, which closes the provider iterator and so its HTTP request.
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
        consumer.cancel()
        stopper.cancel()
        raise
    stopper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopper
    if consumer.done():
        return consumer.result()
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError, ProviderError):
        await consumer
    return None
