"""An in-process job queue for tests and development."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

from whalli.domain.model.jobs import Job, decode_job, encode_job
from whalli.ports.job_queue import JobQueue


class InMemoryJobQueue(JobQueue):
    """Records jobs in order; ``drain`` hands them to a handler.

    Jobs go through ``encode_job``/``decode_job`` like on the real queue, so a job that would not
    survive the trip fails here too. ``delay_ms`` is recorded but not waited for.
    """

    def __init__(self) -> None:
        self._pending: deque[tuple[Job, int]] = deque()

    @property
    def jobs(self) -> list[Job]:
        """The jobs waiting to be drained, oldest first."""
        return [job for job, _ in self._pending]

    @property
    def delays(self) -> list[int]:
        return [delay for _, delay in self._pending]

    async def enqueue(self, job: Job, *, delay_ms: int = 0) -> None:
        self._pending.append((decode_job(encode_job(job)), max(0, delay_ms)))

    async def drain(self, handler: Callable[[Job], Awaitable[None]]) -> int:
        """Handle every job, including jobs enqueued while draining; return how many ran.

        A job whose handler raises stays at the head of the queue (at-least-once) and the
        error propagates.
        """
        handled = 0
        while self._pending:
            job, _ = self._pending[0]
            await handler(job)
            self._pending.popleft()
            handled += 1
        return handled
