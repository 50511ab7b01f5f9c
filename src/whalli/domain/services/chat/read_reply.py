"""Use case: the events of a session's reply, from a given event on, for one SSE client."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator

from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.replies import (
    INTERRUPTED_MESSAGE,
    MAX_EVENT_ID_PART,
    ErrorEvent,
    ReplyEvent,
    is_final,
    parse_event_id,
)
from whalli.ports.reply_stream import ReplyStream

# A reader's lease, in heartbeats: renewed about once a heartbeat while it reads, it ends a few
# heartbeats after its process died (which never said it left).
READER_LEASE_HEARTBEATS = 3
HEARTBEAT = None  # yielded when nothing arrived for a while: the client should get a comment
INTERRUPTED = ErrorEvent(
    code="reply_interrupted",
    message=INTERRUPTED_MESSAGE,
)
# Before any event: the ``INTERRUPTED`` of a reply that sent none follows this id.
_BEFORE_ALL = "0-0"


Batch = list[tuple[str, ReplyEvent]]


class ReadReplyHandler:
    """Rules:
    - events come in order, each with its stream id, in batches of whatever arrived together
      (so a caller can write a batch at once); starting ``after`` an id resumes exactly after
      that event (``Last-Event-ID``), from the start otherwise;
    - every reader of a session sees the same events (other tabs, other API processes);
    - the iteration ends with the batch holding the final ``done`` or ``error`` event (nothing
      after it is yielded); a reader that resumed after an id beyond the reply's events (one
      it never had) is given the final event alone once the reply ended, or the
      ``reply_interrupted`` below when it has none;
    - when nothing arrives for ``heartbeat_s`` a ``HEARTBEAT`` (None) is yielded, so the caller
      can keep proxies from closing an idle connection;
    - after such a silence, if nobody generates the reply any more (its process died, so its
      final event will never come) and no final event raced in meanwhile, the last batch is a
      synthetic ``reply_interrupted`` error. Its id is one just after the last event read
      (``0-1`` before any), which no event of the reply has: a client resuming after it has
      everything (``ended_at``), one resuming after the last real event gets the error again.
      A store that cannot say counts as 'still generating': a live reply is never ended
      because the store blinked;
    - with ``track_readers`` (needed only to stop abandoned replies) the reader is counted while
      attached, on a lease of ``READER_LEASE_HEARTBEATS`` heartbeats renewed every heartbeat by
      a timer, however slowly its client reads (so only a reader whose process was killed
      stops counting, soon after); otherwise no bookkeeping round trip sits before the first
      token;
    - a store that stops answering mid-stream is ridden out: the read is tried again every
      ``retry_s`` (a ``HEARTBEAT`` each time) for up to ``outage_s``, then the iteration ends
      without a final event (a client resumes later with the last id it had).
    """

    def __init__(
        self,
        stream: ReplyStream,
        heartbeat_s: float = 15.0,
        *,
        track_readers: bool = True,
        outage_s: float = 60.0,
        retry_s: float = 0.5,
    ) -> None:
        self._stream = stream
        self._block_ms = int(heartbeat_s * 1000)
        self._track = track_readers
        self._renew_s = heartbeat_s
        self._lease_s = heartbeat_s * READER_LEASE_HEARTBEATS
        self._outage_s, self._retry_s = outage_s, retry_s

    def events(self, session_id: str, after: str | None) -> AsyncGenerator[Batch | None, None]:
        # (untracked: no generator layer of its own, which every open stream would hold)
        if not self._track:
            return self._events(session_id, after)
        return self._tracked(session_id, after)

    async def _tracked(
        self, session_id: str, after: str | None
    ) -> AsyncGenerator[Batch | None, None]:
        # The join runs to its end even if the client leaves during it (then the count was
        # raised, and must come down again), so it is a task of its own.
        reader = uuid.uuid4().hex
        joining = asyncio.ensure_future(
            self._stream.reader_joined(session_id, reader, self._lease_s)
        )
        renewing: asyncio.Task[None] | None = None
        try:
            await asyncio.shield(joining)
            # On a timer of its own, not between events: a reader whose client reads slowly
            # (its writes waiting on the connection) still counts while connected.
            renewing = asyncio.ensure_future(self._renew(session_id, reader))
            async for item in self._events(session_id, after):
                yield item
        finally:
            if renewing is not None:
                renewing.cancel()
            # A client that went away cancels this generator, and the cancellation repeats at
            # every await of the cancelled scope: shield the bookkeeping so it still happens.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._leave_after(joining, session_id, reader))

    async def _renew(self, session_id: str, reader: str) -> None:
        """Renew the reader's lease every heartbeat until cancelled."""
        while True:
            await asyncio.sleep(self._renew_s)
            with contextlib.suppress(ServiceUnavailable):
                await self._stream.reader_joined(session_id, reader, self._lease_s)

    async def _events(
        self, session_id: str, after: str | None
    ) -> AsyncGenerator[Batch | None, None]:
        cursor = after
        outage: float | None = None  # when the store stopped answering, while it does not
        while True:
            try:
                batch = await self._stream.read(session_id, cursor, block_ms=self._block_ms)
                outage = None  # it answered
                if not batch:
                    yield HEARTBEAT
                    if await self._producing(session_id):
                        continue
                    # Whatever reached the store before the generator went is all there is.
                    batch = await self._stream.read(session_id, cursor, block_ms=0)
                    if not batch:
                        ending = await self._ending(session_id, cursor)
                        if ending:
                            yield ending
                        return
            except ServiceUnavailable:
                # The store blinked: ride it out, heartbeats keeping the connection open; after
                # ``outage_s`` the stream just ends (no event of its own: a browser reconnects
                # with the last id it saw, and resumes there once the store is back).
                now = time.monotonic()
                outage = now if outage is None else outage
                if now - outage > self._outage_s:
                    return
                yield HEARTBEAT
                await asyncio.sleep(self._retry_s)
                continue
            for index, (_, event) in enumerate(batch):
                if is_final(event):
                    yield batch[: index + 1]
                    return
            cursor = batch[-1][0]
            yield batch

    async def ended_at(self, session_id: str, event_id: str) -> bool:
        """Whether a client that saw ``event_id`` has everything (a browser's ``EventSource``
        reconnects whenever a stream closes, with the last id it saw, and should be told to
        stop): ``event_id`` is the reply's final event, or nothing is stored from it on and
        nobody generates the reply any more (the id of a synthetic ``reply_interrupted``, or
        an id past a finished reply's end). One read, two when nothing is stored from it on."""
        batch = await self._stream.read(session_id, _just_before(event_id), block_ms=0, count=1)
        if not batch:
            return not await self._producing(session_id)
        return batch[0][0] == event_id and is_final(batch[0][1])

    async def _ending(self, session_id: str, cursor: str | None) -> Batch:
        """What ends a reader's stream once nothing more will come after ``cursor``:
        - the reply's final event, when the reader resumed after an id beyond it (one the reply
          never had: forged, or another reply's), so its stream still ends with that event;
        - nothing when the reader has it all: the final event itself, or the ``reply_interrupted``
          it was given before (whose id is just after the reply's last event), or a stream gone;
        - else ``reply_interrupted`` (the reply ended without a final event), with an id of its
          own just after ``cursor``."""
        last = await self._stream.last(session_id)
        if last is not None and is_final(last[1]):
            return [] if last[0] == cursor else [last]
        if cursor is not None and (
            last is None or cursor == _just_after(last[0])
        ):  # (an expired stream: what it held was read or is saved)
            return []
        return [(_just_after(cursor or _BEFORE_ALL), INTERRUPTED)]

    async def _producing(self, session_id: str) -> bool:
        try:
            return await self._stream.producing(session_id)
        except ServiceUnavailable:
            return True

    async def _leave_after(
        self, joining: asyncio.Future[None], session_id: str, reader: str
    ) -> None:
        """Count the reader out, once its join ended, if the join counted it in."""
        try:
            await joining
        except (ServiceUnavailable, asyncio.CancelledError):
            return
        with contextlib.suppress(ServiceUnavailable):
            await self._stream.reader_left(session_id, reader)


def _just_after(event_id: str) -> str:
    """The smallest id above ``event_id``."""
    ms, seq = parse_event_id(event_id)
    return f"{ms}-{seq + 1}" if seq < MAX_EVENT_ID_PART else f"{ms + 1}-0"


def _just_before(event_id: str) -> str | None:
    """The largest id below ``event_id`` (``None``: nothing is below it), so that reading after
    it starts at ``event_id`` itself."""
    ms, seq = parse_event_id(event_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return None if ms == 0 else f"{ms - 1}-{MAX_EVENT_ID_PART}"
