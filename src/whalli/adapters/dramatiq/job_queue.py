"""The job queue on Dramatiq: every job is one message to the single ``whalli.run_job`` actor."""

from __future__ import annotations

import asyncio

import redis
from dramatiq.broker import Broker
from dramatiq.errors import BrokerError
from dramatiq.message import Message

from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import Job, encode_job
from whalli.ports.job_queue import JobQueue

RUN_JOB_ACTOR = "whalli.run_job"


def job_message(job: Job, queue_name: str) -> Message[None]:
    """The message the worker's ``whalli.run_job`` actor receives: the encoded job as a string."""
    return Message(
        queue_name=queue_name,
        actor_name=RUN_JOB_ACTOR,
        args=(encode_job(job).decode(),),
        kwargs={},
        options={},
    )


class DramatiqJobQueue(JobQueue):
    """Builds the message directly, so the enqueuing process needs no actor declared."""

    def __init__(self, broker: Broker, queue_name: str) -> None:
        self._broker = broker
        self._queue_name = queue_name

    async def enqueue(self, job: Job, *, delay_ms: int = 0) -> None:
        message = job_message(job, self._queue_name)
        delay = delay_ms if delay_ms > 0 else None
        try:
            # The broker's Redis client is blocking: keep it off the event loop.
            await asyncio.to_thread(self._broker.enqueue, message, delay=delay)
        except (redis.RedisError, BrokerError) as e:
            raise ServiceUnavailable("The job queue is unavailable.") from e
