"""Use case: queue the recurring searches that are due (the worker's search scheduler)."""

from __future__ import annotations

import logging

from whalli.domain.model.jobs import RunSearchSubscription
from whalli.domain.model.searches import UNQUEUED_RUN, SearchSubscription
from whalli.ports.clock import Clock
from whalli.ports.job_queue import JobQueue
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


class ScheduleDueSearches:
    """Queue ``RunSearchSubscription`` for every active subscription whose run is due.

    Rules:
    - the due subscriptions are claimed (``claimed_at``) and their next run moved one interval
      on in one statement that skips rows another claim holds (``claim_due``): two schedulers
      at once (two workers) never queue one run twice; ``last_run_at`` is the run's to set
      (``RunSearchHandler``), not the claim's;
    - the claim is committed before anything is queued: a queue that fails after the commit
      skips that one run (the next comes one interval later), it never runs one twice; such
      a search shows it as its ``last_error`` (``UNQUEUED_RUN``, with its time), as a run
      that failed would, so its user is not left wondering why no results came (best
      effort: with the database failing too it is only logged);
    - claimed ``batch`` at a time, most overdue first, batch after batch until one comes back
      short, at most ``max_batches`` per call (the rest at the next tick): a deployment runs
      up to ``batch * max_batches`` searches per tick, and one tick never runs unbounded.

    ``execute`` returns how many runs it queued.
    """

    def __init__(
        self, uow: UnitOfWork, queue: JobQueue, clock: Clock, *, batch: int = 100,
        max_batches: int = 20,
    ) -> None:  # fmt: skip
        self._uow, self._queue, self._clock = uow, queue, clock
        self._batch, self._max_batches = batch, max_batches

    async def execute(self) -> int:
        now, queued = self._clock.now(), 0
        for _ in range(self._max_batches):
            async with self._uow as uow:
                claimed = await uow.searches.claim_due(now, limit=self._batch)
                await uow.commit()
            queued += await self._queue_runs(claimed)
            if len(claimed) < self._batch:
                break
        if queued:
            log.info("Queued %d recurring searches.", queued)
        return queued

    async def _queue_runs(self, claimed: list[SearchSubscription]) -> int:
        unqueued: list[SearchSubscription] = []
        for subscription in claimed:
            try:
                await self._queue.enqueue(RunSearchSubscription(subscription_id=subscription.id))
            except Exception:
                log.exception(
                    "The run of search %s was not queued; it runs at its next interval.",
                    subscription.id,
                )
                unqueued.append(subscription)
        if unqueued:
            await self._record_unqueued(unqueued)
        return len(claimed) - len(unqueued)

    async def _record_unqueued(self, unqueued: list[SearchSubscription]) -> None:
        try:
            async with self._uow as uow:
                now = self._clock.now()
                for subscription in unqueued:
                    await uow.searches.record_failure(subscription.id, now, UNQUEUED_RUN)
                await uow.commit()
        except Exception:
            log.exception("%d unqueued search runs were not recorded.", len(unqueued))
