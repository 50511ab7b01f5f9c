"""Tell the application when the queue gives up on a job for good (its message dead-lettered).

A job's handler knows of its own last attempt (``attempts.is_last_attempt``) only what it sees
itself. Dramatiq also gives up where the handler cannot tell: a last attempt that raised
anything the handler did not catch, or that the TimeLimit middleware interrupted; a message the
AgeLimit middleware finds older than its age limit (first queued so long ago, counting delays
and retries) and drops unrun; one DeliveryLimit drops because its workers kept dying while
running it. In every case the message is marked ``failed`` before the ``after_process_message``
or ``after_skip_message`` hooks end, and this middleware then hands a ``JobAbandoned`` (the
decoded job, the cause, and since when its outcome is missing) to ``on_abandoned``, run on the
worker's event loop, before the message goes to the dead-letter queue.

Add it first in the broker's list: Dramatiq runs the ``after_*`` hooks in reverse order, so its
own then run last, once Retries has decided (``failed``) and TimeLimit has disarmed the
attempt's timer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.broker import Broker, MessageProxy
from dramatiq.common import current_millis
from dramatiq.middleware import AgeLimit, Middleware

from whalli.adapters.dramatiq.job_queue import RUN_JOB_ACTOR
from whalli.domain.model.jobs import AbandonCause, Job, JobAbandoned, decode_job

log = logging.getLogger(__name__)

OnAbandoned = Callable[[JobAbandoned], Awaitable[None]]


class AbandonedJobs(Middleware):
    def __init__(self, on_abandoned: OnAbandoned) -> None:
        self._on_abandoned = on_abandoned
        # When the attempt its thread runs began. Per thread, not per message id: a retry has
        # its first attempt's id, and another thread may begin it while the first attempt's
        # thread still runs its after-hooks (a slow one: a Redis round trip on a blinking Redis).
        self._attempt = threading.local()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        self._attempt.started = datetime.now(UTC)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        started = self._pop()
        job = _job(message)
        if job is not None:
            self._tell(JobAbandoned(job=job, cause="failed", since=started or datetime.now(UTC)))

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._pop()
        job = _job(message)
        if job is not None:
            # AgeLimit and DeliveryLimit are the broker's middleware that fail a message unrun
            cause: AbandonCause = "expired" if _too_old(broker, message) else "interrupted"
            queued = datetime.fromtimestamp(message.message_timestamp / 1000, UTC)
            self._tell(JobAbandoned(job=job, cause=cause, since=queued))

    def _pop(self) -> datetime | None:
        """When the attempt this thread runs the hooks of began; forgotten once read."""
        started: datetime | None = getattr(self._attempt, "started", None)
        self._attempt.started = None
        return started

    def _tell(self, abandoned: JobAbandoned) -> None:
        kind = type(abandoned.job).__name__
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            log.error("The queue gave up on a %s; nobody was told.", kind)
            return
        try:
            loop_thread.run_coroutine(self._on_abandoned(abandoned))
        except Exception:
            log.exception("The queue gave up on a %s; telling it failed.", kind)


def _job(message: MessageProxy) -> Job | None:
    """The job of a message the queue failed for good, if it is one of ours and decodes."""
    if not message.failed or message.actor_name != RUN_JOB_ACTOR or not message.args:
        return None
    try:
        return decode_job(message.args[0])
    except (msgspec.DecodeError, TypeError):
        return None  # the actor logged it: nobody to tell


def _too_old(broker: Broker, message: MessageProxy) -> bool:
    """What AgeLimit checks (the broker's limit, or the message's or actor's own)."""
    limit = next((m for m in broker.middleware if isinstance(m, AgeLimit)), None)
    if limit is None:
        return False
    options = broker.get_actor(message.actor_name).options
    max_age: int | None = message.options.get("max_age") or options.get("max_age", limit.max_age)
    if not max_age:
        return False
    return current_millis() - message.message_timestamp >= max_age
