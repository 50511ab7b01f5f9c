"""Consume a provider stream until it ends or the session's stop is requested."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

from whalli.domain.model.chats import TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamReasoning,
    StreamStart,
)
from whalli.ports.reply_stream import ReplyStream


class StopTicket:
    """One reply being watched: the task that generates it, stopped by cancelling it. The
    ``with`` block of the ticket is what it is watched for (see ``StopBoard.watch``)."""

    __slots__ = ("_task", "_unread_since", "_watched", "session_id", "stopped")

    def __init__(
        self, session_id: str, task: asyncio.Task[object], watched: set[StopTicket]
    ) -> None:
        self.session_id, self._task, self._watched = session_id, task, watched
        self.stopped = False
        self._unread_since: float | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._watched.discard(self)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._task.cancel()

    def unread(self, readers: int | None, now: float, abandon_after_s: float) -> None:
        """Stop once nobody has been reading for ``abandon_after_s`` (``None``: unknown)."""
        if readers is None:
            return
        if readers > 0:
            self._unread_since = None
            return
        if self._unread_since is None:
            self._unread_since = now
        if now - self._unread_since >= abandon_after_s:
            self.stop()


class StopBoard:
    """The stop poller of every reply this process generates.

    One loop asks the store, every ``poll_s`` seconds, which of the watched sessions were asked
    to stop (shared by every API process): one round trip per interval for all of them, instead
    of a task and a poll per reply. The loop runs only while something is watched.

    With ``abandon_after_s`` set, a reply nobody has been reading for that long is stopped too
    (by default generation runs to the end, so a reader who comes back finds the answer saved).
    A store that does not answer counts as 'not yet': it never aborts a reply.
    """

    def __init__(
        self, stream: ReplyStream, poll_s: float = 0.25, abandon_after_s: float | None = None
    ) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be more than 0")
        self._stream, self._poll_s, self._abandon_after = stream, poll_s, abandon_after_s
        self._watched: set[StopTicket] = set()
        self._poller: asyncio.Task[None] | None = None

    @property
    def watched(self) -> int:
        return len(self._watched)

    def stop_all(self) -> int:
        """Stop every reply watched here now (the process is shutting down): each ends as a
        user's stop ends it. How many."""
        tickets = list(self._watched)
        for ticket in tickets:
            ticket.stop()
        return len(tickets)

    def watch(self, session_id: str) -> StopTicket:
        """``with board.watch(session_id) as ticket:`` watches the current task's reply for the
        block: a stop cancels the task (inside the block only: the ticket is dropped, without an
        await, as the block ends)."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("watch() runs inside a task")
        ticket = StopTicket(session_id, task, self._watched)
        self._watched.add(ticket)
        self._start_poller()
        return ticket

    def _start_poller(self) -> None:
        loop = asyncio.get_running_loop()
        poller = self._poller
        if poller is None or poller.done() or poller.get_loop() is not loop:
            self._poller = loop.create_task(self._poll(), name="reply-stop-poller")

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Wait first: a reply shorter than one interval is never polled for.
            await asyncio.sleep(self._poll_s)
            if not self._watched:
                self._poller = None  # the next watch starts a new loop
                return
            tickets = list(self._watched)
            sessions = {ticket.session_id for ticket in tickets}
            stopped: set[str] = set()
            with contextlib.suppress(Exception):
                stopped = await self._stream.stops_requested(sessions)
            readers: dict[str, int] = {}
            if self._abandon_after is not None:
                with contextlib.suppress(Exception):
                    readers = await self._stream.readers_of(sessions)
            now = loop.time()
            for ticket in tickets:
                if ticket not in self._watched:
                    continue  # its block ended while the store answered
                if ticket.session_id in stopped:
                    ticket.stop()
                elif self._abandon_after is not None:
                    ticket.unread(readers.get(ticket.session_id), now, self._abandon_after)


async def stream_until_stopped(
    model: ChatModel,
    request: CompletionRequest,
    on_delta: Callable[[str], Awaitable[None]],
    board: StopBoard,
    session_id: str,
    on_reasoning: Callable[[str], Awaitable[None]] | None = None,
    on_start: Callable[[TokenUsage], None] | None = None,
) -> StreamEnd | None:
    """The provider's ``StreamEnd``, or ``None`` when the session was stopped first. Text goes
    to ``on_delta``, reasoning to ``on_reasoning`` (dropped without one), the prompt's count
    as the provider began (``StreamStart``) to ``on_start``.

    Runs in the calling task; a stop cancels it inside this call, which closes the provider
    iterator and so its HTTP request, and is absorbed here. Any other cancellation (shutdown)
    goes on. Raises ``ProviderError`` when the provider fails or ends without its final event.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("stream_until_stopped() runs inside a task")
    cancelling = task.cancelling()
    with board.watch(session_id) as ticket:
        try:
            end = await _consume(model, request, on_delta, on_reasoning, on_start)
        except asyncio.CancelledError:
            if ticket.stopped and task.uncancel() <= cancelling:
                return None
            raise
    if ticket.stopped:  # stopped as it finished, and the cancellation was absorbed on the way
        task.uncancel()
    return end


async def close_stream(events: AsyncIterator[object]) -> None:
    """Close a provider's iterator, and so its upstream request (not at garbage collection)."""
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


async def _consume(
    model: ChatModel,
    request: CompletionRequest,
    on_delta: Callable[[str], Awaitable[None]],
    on_reasoning: Callable[[str], Awaitable[None]] | None,
    on_start: Callable[[TokenUsage], None] | None = None,
) -> StreamEnd:
    events = model.stream(request)
    try:
        async for event in events:
            if isinstance(event, StreamDelta):
                if event.text:
                    await on_delta(event.text)
            elif isinstance(event, StreamEnd):
                return event
            elif isinstance(event, StreamReasoning) and event.text and on_reasoning is not None:
                await on_reasoning(event.text)
            elif isinstance(event, StreamStart) and on_start is not None:
                on_start(event.usage)
            # A ToolCallDelta is ignored: the chat flow offers no tools, so no model has one to
            # call; a piece of a call from a misbehaving server has nothing to show the reader
            # and is no reason to fail a reply whose text is fine.
    finally:
        await close_stream(events)
    raise ProviderError("The provider ended the stream without finishing it.")
