"""Dead-letter a message whose worker keeps dying while running it.

Dramatiq's Redis broker gives the unacknowledged messages of a worker that stopped heartbeating
back to their queue. A job that crashes its process (out of memory, a segfault in a parser) would
then take down every worker in turn, forever. Retries do not help: they count exceptions, and a
dead process raises none.

So this middleware counts, in Redis, the deliveries of each message that *started* and did not
*finish*: ``INCR <namespace>:__deliveries__.<message id>`` before processing, ``DEL`` after it
(whatever the outcome: a finished delivery, even a failed one, is the Retries middleware's
business). When a message starts for the ``max_deliveries + 1``-th time without one of its earlier
deliveries having finished, it is moved to the dead-letter queue instead of being run.

The counter expires after ``ttl_ms`` so abandoned counters do not pile up. If Redis cannot be
reached here, Dramatiq logs the failure and processes the message anyway (fail open).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from dramatiq.broker import Broker, MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

log = logging.getLogger(__name__)


class DeliveryLimit(Middleware):
    def __init__(self, *, max_deliveries: int = 3, ttl_ms: int = 86_400_000) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.max_deliveries = max_deliveries
        self.ttl_ms = ttl_ms

    @staticmethod
    def counter_key(broker: Broker, message_id: str) -> str:
        namespace = getattr(broker, "namespace", "dramatiq")
        return f"{namespace}:__deliveries__.{message_id}"

    @staticmethod
    def _client(broker: Broker) -> redis.Redis:
        client: redis.Redis = getattr(broker, "client")  # noqa: B009 (RedisBroker only)
        return client

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        key = self.counter_key(broker, message.message_id)
        pipe = self._client(broker).pipeline(transaction=True)
        pipe.incr(key)
        pipe.pexpire(key, self.ttl_ms)
        deliveries = int(pipe.execute()[0])
        if deliveries > self.max_deliveries:
            log.error(
                "Message %s had %d deliveries that never finished; moving it to the dead-letter "
                "queue.",
                message.message_id,
                deliveries - 1,
            )
            message.fail()
            raise SkipMessage("delivery limit exceeded")

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self._client(broker).delete(self.counter_key(broker, message.message_id))

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._client(broker).delete(self.counter_key(broker, message.message_id))
