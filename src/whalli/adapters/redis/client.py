"""The shared async Redis client, as a resource with start-up and shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cache
from importlib.metadata import version

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.driver_info import DriverInfo


@cache
def _driver_info() -> DriverInfo:
    # Left to itself redis-py looks its version up in the package metadata for every new
    # connection (~350 µs each, measured), which a burst of new streams pays many times over.
    return DriverInfo(name="redis-py", lib_version=version("redis"))


async def create_redis(
    url: str,
    *,
    socket_timeout: float = 2.0,
    connect_timeout: float = 2.0,
    health_check_interval: int = 10,
    retries: int = 2,
    max_connections: int = 2000,
) -> AsyncIterator[Redis]:
    """Yield a pooled client for ``url``; the pool is closed when the generator finishes.

    Nothing connects here: connections are opened lazily by the first command. Short timeouts
    keep a dead Redis from stalling requests; retrying on connection errors and timeouts (which
    reconnects) and checking idle connections every ``health_check_interval`` seconds make a
    restarted Redis usable again without restarting the app.

    Every reply stream read from Redis (SSE in another process than its generation) holds a
    connection during its blocking reads, and the pool fails a command rather than wait when
    all ``max_connections`` are busy (redis-py's default is 100): size it for the open streams
    expected plus the other traffic, below Redis's ``maxclients`` (10,000 by default).
    """
    client = Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry_on_timeout=True,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries),
        health_check_interval=health_check_interval,
        max_connections=max_connections,
        driver_info=_driver_info(),
    )
    try:
        yield client
    finally:
        await client.aclose()
