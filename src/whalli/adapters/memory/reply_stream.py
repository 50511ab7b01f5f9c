"""In-process ``ReplyStream`` with the Redis one's semantics (ids ``"<n>-0"``, increasing)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.replies import ReplyEvent, is_final, parse_event_id
from whalli.ports.clock import Clock
from whalli.ports.reply_stream import ReplyStream

EventId = tuple[int, int]


@dataclass
class _Stream:
    expires_at: datetime
    events: list[tuple[EventId, ReplyEvent]] = field(default_factory=list)


def _check_ttl(ttl_seconds: int) -> None:
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")


class InMemoryReplyStream(ReplyStream):
    """Expiry follows ``clock``; a blocked ``read`` waits in real time (up to ``block_ms``).

    One process: a reply is produced from ``begin`` (or a first publish) until its
    final event; ``abandon`` plays the generating process dying without one (tests only).
    """

    def __init__(self, clock: Clock, *, max_len: int = 10_000) -> None:
        self._clock = clock
        self._max_len = max_len
        self._streams: dict[str, _Stream] = {}
        self._flags: dict[tuple[str, str], datetime] = {}
        self._readers: dict[str, dict[str, datetime]] = {}  # session -> reader -> lease end
        self._producing: set[str] = set()
        self._generators: dict[str, asyncio.Task[object]] = {}  # who called ``begin``
        self._ended: set[str] = set()
        self._published = asyncio.Condition()
        # One counter for every session: a stream recreated after expiry keeps increasing ids.
        self._last = 0

    def _live(self, session_id: str) -> _Stream | None:
        stream = self._streams.get(session_id)
        if stream is not None and self._clock.now() >= stream.expires_at:
            del self._streams[session_id]
            return None
        return stream

    def _flag(self, kind: str, session_id: str) -> bool:
        expires_at = self._flags.get((kind, session_id))
        if expires_at is not None and self._clock.now() >= expires_at:
            del self._flags[(kind, session_id)]
            return False
        return expires_at is not None

    def _expiry(self, ttl_seconds: int) -> datetime:
        _check_ttl(ttl_seconds)
        return self._clock.now() + timedelta(seconds=ttl_seconds)

    async def publish(self, session_id: str, event: ReplyEvent, ttl_seconds: int) -> str:
        expires_at = self._expiry(ttl_seconds)
        stream = self._live(session_id) or self._streams.setdefault(session_id, _Stream(expires_at))
        self._last += 1
        stream.events.append(((self._last, 0), event))
        del stream.events[: -self._max_len]
        stream.expires_at = expires_at
        if is_final(event):
            self._producing.discard(session_id)
            self._generators.pop(session_id, None)
            self._ended.add(session_id)
        else:
            self._produce(session_id)
        async with self._published:
            self._published.notify_all()
        return f"{self._last}-0"

    def _after(self, session_id: str, after: EventId, count: int) -> list[tuple[str, ReplyEvent]]:
        stream = self._live(session_id)
        events = [] if stream is None else stream.events
        return [(f"{i[0]}-{i[1]}", e) for i, e in events if i > after][:count]

    async def read(
        self, session_id: str, after: str | None, *, block_ms: int, count: int = 256
    ) -> list[tuple[str, ReplyEvent]]:
        start = (0, 0) if after is None else parse_event_id(after)
        if count <= 0:
            raise InvalidInput("count must be positive", field="count")
        found = self._after(session_id, start, count)
        if found or block_ms <= 0:
            return found
        async with self._published:
            try:
                await asyncio.wait_for(
                    self._published.wait_for(lambda: bool(self._after(session_id, start, 1))),
                    block_ms / 1000,
                )
            except TimeoutError:
                return []
        return self._after(session_id, start, count)

    async def last(self, session_id: str) -> tuple[str, ReplyEvent] | None:
        stream = self._live(session_id)
        if stream is None or not stream.events:
            return None
        (ms, seq), event = stream.events[-1]
        return f"{ms}-{seq}", event

    async def request_stop(self, session_id: str, ttl_seconds: int) -> None:
        self._flags[("stop", session_id)] = self._expiry(ttl_seconds)

    async def stops_requested(self, session_ids: Collection[str]) -> set[str]:
        return {session_id for session_id in session_ids if self._flag("stop", session_id)}

    async def reader_joined(self, session_id: str, reader_id: str, lease_s: float) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        leases = self._readers.setdefault(session_id, {})
        leases[reader_id] = self._clock.now() + timedelta(seconds=lease_s)

    async def reader_left(self, session_id: str, reader_id: str) -> None:
        leases = self._readers.get(session_id)
        if leases is not None:
            leases.pop(reader_id, None)
            if not leases:
                del self._readers[session_id]

    async def readers_of(self, session_ids: Collection[str]) -> dict[str, int]:
        now = self._clock.now()
        return {
            session_id: sum(1 for end in self._readers.get(session_id, {}).values() if end > now)
            for session_id in session_ids
        }

    async def begin(self, session_id: str, ttl_seconds: int) -> None:
        _check_ttl(ttl_seconds)
        self._produce(session_id)
        task = asyncio.current_task()
        if task is not None:
            self._generators[session_id] = task

    async def producing(self, session_id: str) -> bool:
        generator = self._generators.get(session_id)
        lost = generator is not None and generator.done() and session_id not in self._ended
        return session_id in self._producing and not lost

    def abandon(self, session_id: str) -> None:
        """Tests only: the generator's process died, so the final event will never come."""
        self._producing.discard(session_id)

    def _produce(self, session_id: str) -> None:
        if session_id not in self._ended:  # a reply that ended stays ended, as on Redis
            self._producing.add(session_id)
