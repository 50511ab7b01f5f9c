"""The per-session stream that decouples generation from the HTTP connections reading it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from whalli.domain.model.replies import ReplyEvent


class ReplyStream(Protocol):
    """An append-only, ordered log of one reply's events, shared by every API process.

    Event ids are opaque strings that increase in order; ``read(after=id)`` resumes exactly after
    that event. Raises ``ServiceUnavailable`` when the store is unreachable.
    """

    async def publish(self, session_id: str, event: ReplyEvent, ttl_seconds: int) -> str:
        """Append ``event``; the whole stream expires ``ttl_seconds`` after the last append."""
        ...

    async def read(
        self, session_id: str, after: str | None, *, block_ms: int, count: int = 256
    ) -> list[tuple[str, ReplyEvent]]:
        """Events after ``after`` (from the start when ``None``), waiting up to ``block_ms``
        for at least one; an empty list means none arrived in time."""
        ...

    async def last(self, session_id: str) -> tuple[str, ReplyEvent] | None:
        """The stream's last event with its id; ``None`` when it has none (or expired)."""
        ...

    async def request_stop(self, session_id: str, ttl_seconds: int) -> None:
        """Ask whoever generates this reply to stop (seen by ``stops_requested``)."""
        ...

    async def stops_requested(self, session_ids: Collection[str]) -> set[str]:
        """Those of ``session_ids`` asked to stop (one round trip for all of them)."""
        ...

    async def reader_joined(self, session_id: str, reader_id: str, lease_s: float) -> None:
        """Count ``reader_id``, an SSE client, as attached to the session for the next
        ``lease_s`` seconds (shared by every API process); joining again renews the lease. A
        reader whose process died, and so never left, stops counting when its lease ends."""
        ...

    async def reader_left(self, session_id: str, reader_id: str) -> None: ...

    async def readers_of(self, session_ids: Collection[str]) -> dict[str, int]:
        """How many clients are attached now (their leases running) to each of
        ``session_ids``: one round trip for all of them."""
        ...

    async def begin(self, session_id: str, ttl_seconds: int) -> None:
        """This process generates the session's reply (its starter launched exactly one
        generation): a store with a local side may serve this process's readers from memory
        from now on. Nothing to do for a purely shared store."""
        ...

    async def producing(self, session_id: str) -> bool:
        """Whether some process is still generating the session's reply: True from ``begin``
        (or a first ``publish`` without it) until its final event is published; False once
        nobody is (the generator finished, the task that called ``begin`` ended without the
        final event, or its process died: a store shared by several processes notices the
        last two within seconds, not at once).
        One round trip at most. Raises ``ServiceUnavailable``."""
        ...
