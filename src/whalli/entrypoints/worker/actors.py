"""The worker's one actor: decode a job payload and dispatch it.

Declared by :func:`register` on a given broker, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import msgspec
from dramatiq.broker import Broker

from whalli.adapters.dramatiq.job_queue import RUN_JOB_ACTOR
from whalli.domain.model.jobs import Job, decode_job

log = logging.getLogger(__name__)

Dispatch = Callable[[Job], Awaitable[None]]


def register(broker: Broker, dispatch: Dispatch, *, queue_name: str) -> dramatiq.Actor[Any, Any]:
    """Declare ``whalli.run_job`` on ``broker``, consuming ``queue_name``.

    A payload that does not decode can never succeed: it is logged and dropped rather than
    retried. Errors from the handler propagate, so the broker retries them.
    """

    async def run_job(payload: str) -> None:
        try:
            job = decode_job(payload)
        except (msgspec.DecodeError, TypeError) as e:
            # The reason, not the payload: it may carry user data.
            log.error("Dropping a job payload that does not decode: %s", e)
            return
        await dispatch(job)

    return dramatiq.actor(broker=broker, actor_name=RUN_JOB_ACTOR, queue_name=queue_name)(run_job)
