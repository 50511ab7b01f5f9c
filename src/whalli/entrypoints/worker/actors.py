"""The worker's one actor: decode a job payload and dispatch it.

Declared by :func:`register` on a given broker, never at import time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import msgspec
from dramatiq.broker import Broker

from whalli.adapters.dramatiq.attempts import current_is_last_attempt
from whalli.adapters.dramatiq.job_queue import RUN_JOB_ACTOR
from whalli.domain.model.errors import WhalliError
from whalli.domain.model.jobs import Job, RunSearchSubscription, decode_job

log = logging.getLogger(__name__)

Dispatch = Callable[[Job], Awaitable[None]]

# The longest a service's Retry-After holds a job back: a longer one is a broken header, not a
# rate limit (and the sweeper queues a file left that long again anyway).
MAX_RETRY_AFTER_MS = 3_600_000


def register(
    broker: Broker, dispatch: Dispatch, *, queue_name: str, min_retry_delay_ms: int = 0
) -> dramatiq.Actor[Any, Any]:
    """Declare ``whalli.run_job`` on ``broker``, consuming ``queue_name``.

    A payload that does not decode can never succeed: it is logged and dropped rather than
    retried. Errors from the handler propagate, so the broker retries them; one that says when
    to try again (``details["retry_after"]`` seconds: a provider's 429 or 503 Retry-After) is
    retried no sooner than that (at least ``min_retry_delay_ms``, at most an hour), instead of
    after the queue's own backoff, which may be far shorter. It still counts as a retry.
    A ``RunSearchSubscription`` is told whether it is its ``last_attempt`` (the broker will not
    retry it), read from the message the broker runs.
    """

    async def run_job(payload: str) -> None:
        try:
            job = decode_job(payload)
        except (msgspec.DecodeError, TypeError) as e:
            # The reason, not the payload: it may carry user data.
            log.error("Dropping a job payload that does not decode: %s", e)
            return
        if isinstance(job, RunSearchSubscription):
            # a failure the queue retries is not the search's error yet (the retry may succeed)
            job = msgspec.structs.replace(job, last_attempt=current_is_last_attempt(broker))
        try:
            await dispatch(job)
        except WhalliError as e:
            delay_ms = _retry_delay_ms(e, min_retry_delay_ms)
            if delay_ms is None:
                raise
            log.warning("%s Retrying %s in %d ms.", e.message, type(job).__name__, delay_ms)
            raise dramatiq.Retry(e.code, delay=delay_ms) from e

    return dramatiq.actor(broker=broker, actor_name=RUN_JOB_ACTOR, queue_name=queue_name)(run_job)


def _retry_delay_ms(error: WhalliError, floor_ms: int) -> int | None:
    seconds = error.details.get("retry_after")
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return None
    seconds = min(seconds, MAX_RETRY_AFTER_MS / 1000)  # 1e308 s is finite, in ms it is not
    return min(max(math.ceil(seconds * 1000), floor_ms), MAX_RETRY_AFTER_MS)
