"""The Redis broker behind the job queue, with retry, age, time and delivery limits.

``create_broker`` only builds objects: nothing connects until the first command, no global broker
is set (the worker entrypoint does that), and no actor is declared here.
"""

from __future__ import annotations

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    CurrentMessage,
    Middleware,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from whalli.adapters.dramatiq.delivery_limit import DeliveryLimit

DEFAULT_MAX_AGE_MS = 86_400_000  # a job still queued after a day is stale: dead-letter it
DEFAULT_TIME_LIMIT_MS = 600_000  # one job may run for ten minutes at most
DEFAULT_HEARTBEAT_TIMEOUT_MS = 60_000
DEFAULT_MAINTENANCE_CHANCE = 1_000  # per million broker commands


def create_broker(
    redis_url: str,
    *,
    namespace: str = "whalli",
    max_retries: int = 5,
    min_backoff_ms: int = 1000,
    max_backoff_ms: int = 300_000,
    max_age_ms: int = DEFAULT_MAX_AGE_MS,
    time_limit_ms: int = DEFAULT_TIME_LIMIT_MS,
    max_deliveries: int = 3,
    heartbeat_timeout_ms: int = DEFAULT_HEARTBEAT_TIMEOUT_MS,
    maintenance_chance: int = DEFAULT_MAINTENANCE_CHANCE,
) -> RedisBroker:
    """A Redis broker whose keys live under ``namespace``.

    - A job that raises is retried ``max_retries`` times with exponential backoff between
      ``min_backoff_ms`` and ``max_backoff_ms``; then it moves to the dead-letter queue
      (``<namespace>:<queue>.XQ``, kept seven days).
    - A job older than ``max_age_ms`` (counted from its first enqueue, so delays and retries
      count) is dead-lettered instead of run; one that runs longer than ``time_limit_ms`` is
      interrupted (and retried).
    - Messages held by a worker that stops heartbeating for ``heartbeat_timeout_ms`` go back to
      their queue (Dramatiq's queue maintenance, run on ``maintenance_chance`` commands per
      million); :class:`DeliveryLimit` dead-letters a message after ``max_deliveries`` deliveries
      that never finished, so a job that kills its worker cannot kill every worker forever.
    """
    # Timeouts so that an unreachable Redis fails a command instead of hanging it; the broker
    # never blocks on Redis (it polls), so a read timeout is safe for consumers too.
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=30)
    middleware: list[Middleware] = [
        AgeLimit(max_age=max_age_ms),
        TimeLimit(time_limit=time_limit_ms),
        ShutdownNotifications(),
        DeliveryLimit(max_deliveries=max_deliveries, ttl_ms=max_age_ms),
        Retries(max_retries=max_retries, min_backoff=min_backoff_ms, max_backoff=max_backoff_ms),
        AsyncIO(),
        CurrentMessage(),  # the actor reads its retry count: ``attempts.is_last_attempt``
    ]
    return RedisBroker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=namespace,
        middleware=middleware,
        heartbeat_timeout=heartbeat_timeout_ms,
        maintenance_chance=maintenance_chance,
    )
