"""Hand work to the background workers."""

from __future__ import annotations

from typing import Protocol

from whalli.domain.model.jobs import Job


class JobQueue(Protocol):
    async def enqueue(self, job: Job, *, delay_ms: int = 0) -> None:
        """Queue ``job`` for at-least-once delivery to a worker.

        Handlers must therefore be idempotent. Raises ``ServiceUnavailable`` when the broker is
        unreachable (nothing was queued).
        """
        ...
