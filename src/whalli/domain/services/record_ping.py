"""Use case: record a diagnostic ``Ping`` job, proving the queue works end to end."""

from __future__ import annotations

from whalli.domain.model.jobs import Ping
from whalli.ports.cache import Cache

PONG = b"pong"
PING_TTL_SECONDS = 600


def ping_key(token: str) -> str:
    return f"ping:{token}"


class RecordPing:
    """Store ``pong`` under ``ping:{token}`` so whoever enqueued the ping can see it arrived.

    Rules:
    - the record expires after ten minutes (``PING_TTL_SECONDS``);
    - recording the same ping twice is harmless (a redelivered job just refreshes it).
    """

    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    async def execute(self, job: Ping) -> None:
        await self._cache.set(ping_key(job.token), PONG, PING_TTL_SECONDS)
