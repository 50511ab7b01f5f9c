"""The job queue on Dramatiq: every job is one message to the single ``whalli.run_job`` actor.

Enqueueing runs on the event loop. Dramatiq's broker holds a blocking Redis client, and a
thread hop around its ``enqueue`` cost about 0.5 ms of CPU per job (measured: 1,000 enqueues
of a ``TitleChat`` to the embedded Redis), paid by the API after every new chat's first reply.
So the queue does what ``RedisBroker.enqueue`` does, with the async client for its one I/O:

- the message is Dramatiq's own (``Message.copy``, ``Message.encode``), with the broker's
  ``redis_message_id`` option, and for a delay the ``.DQ`` queue and the ``eta`` option;
- the broker's middleware sees it before and after (``emit_before``/``emit_after``: metrics);
- it goes into Redis through the broker's own ``dispatch`` script, with the broker's id and
  settings, so a worker cannot tell it from one the broker enqueued itself.

Given the app's lean Redis client (``adapters/redis/resp``: the request path's multiplexed
connection), the script goes through it (``EVALSHA``, ``EVAL`` when a restarted Redis lost it),
not through redis-py's async client: the title job enqueued after every new chat's first reply
cost ~0.2 ms of CPU in redis-py (cProfile of a start + stream loop).

One difference: the enqueuer never runs the queue's maintenance (requeueing the messages of dead
workers, expiring dead letters), which Dramatiq rolls for on any command. The workers roll for
it on each of their own commands, at the same chance.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.message import Message
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from whalli.adapters.redis.resp import RespClient
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import Job, encode_job
from whalli.ports.job_queue import JobQueue

RUN_JOB_ACTOR = "whalli.run_job"
_NO_MAINTENANCE = 0
# The dispatch script only reads it during maintenance, which the enqueuer never runs.
_MAX_UNPACK_SIZE = 1000


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
    """Builds the message directly, so the enqueuing process needs no actor declared.

    ``client`` is an async client of the broker's Redis (the same server and database), and
    ``lean``, if given, the lean client of that Redis, which then sends the script instead."""

    def __init__(
        self, broker: RedisBroker, queue_name: str, *, client: Redis, lean: RespClient | None = None
    ) -> None:
        self._broker = broker
        self._queue_name = queue_name
        self._dispatch = client.register_script(broker.scripts["dispatch"].script)
        self._keys = [broker.namespace]
        self._lean = lean

    async def enqueue(self, job: Job, *, delay_ms: int = 0) -> None:
        broker = self._broker
        # Unique per enqueue, as the broker's: a retried message is enqueued again.
        message = job_message(job, self._queue_name).copy(
            options={"redis_message_id": str(uuid4())}
        )
        delay = delay_ms if delay_ms > 0 else None
        if delay is not None:
            message = message.copy(
                queue_name=dq_name(message.queue_name),
                options={"eta": current_millis() + delay},
            )
        broker.emit_before("enqueue", message, delay)
        args = [
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            _NO_MAINTENANCE,
            _MAX_UNPACK_SIZE,
            message.options["redis_message_id"],
            message.encode(),
        ]
        try:
            await self._run(args)
        except (RedisError, OSError) as e:
            raise ServiceUnavailable("The job queue is unavailable.") from e
        broker.emit_after("enqueue", message, delay)

    async def _run(self, args: list[Any]) -> None:
        lean = self._lean
        if lean is None:
            await self._dispatch(keys=self._keys, args=args)
            return
        script = self._dispatch
        try:
            await lean.execute("EVALSHA", script.sha, len(self._keys), *self._keys, *args)
        except NoScriptError:  # a restarted Redis: EVAL loads it again
            source = script.script
            text = source if isinstance(source, str | bytes) else bytes(source)
            await lean.execute("EVAL", text, len(self._keys), *self._keys, *args)
