"""Use case: record on a search that the queue gave up on one of its runs."""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

import msgspec

from whalli.domain.model.jobs import AbandonCause
from whalli.domain.model.searches import abandoned_run_failure
from whalli.domain.services.searches.runnable import runnable
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


class RecordAbandonedRun(msgspec.Struct, frozen=True, kw_only=True):
    subscription_id: UUID
    cause: AbandonCause
    since: datetime  # when the failed attempt began, or when a job dropped unrun was queued


class RecordAbandonedRunHandler:
    """Show a search's user that a run of it never happened, when the queue gave up on its job
    in a way the job could not tell itself: a last attempt that failed other than by the
    provider's outage (a database error, the job time limit), a job that waited past the
    queue's age limit, or one whose workers kept dying while running it.

    Rules:
    - the search's ``last_error`` becomes a short reason by cause (``abandoned_run_failure``),
      ``last_error_at`` now, ``last_run_at`` unchanged, as for a failure the run records;
    - nothing when the search recorded a run or a failure at or after ``since``: the job told
      why itself (a provider's outage on its last attempt), or its run was stored before the
      job failed, or a later run has succeeded since;
    - the check and the write hold the search's row, so a run committing meanwhile is either
      seen or recorded after the failure (and clears it);
    - nothing for a search that would not run now (gone, paused, its user disabled or no
      longer a member of its project).
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def execute(self, command: RecordAbandonedRun) -> None:
        async with self._uow as uow:
            subscription = await runnable(uow, command.subscription_id, lock=True)
            if subscription is None or subscription.has_outcome_since(command.since):
                return
            reason = abandoned_run_failure(command.cause)
            await uow.searches.record_failure(subscription.id, self._clock.now(), reason)
            await uow.commit()
        log.warning(
            "The queue gave up on a run of search %s (%s); recorded as its last error.",
            subscription.id, command.cause,
        )  # fmt: skip
