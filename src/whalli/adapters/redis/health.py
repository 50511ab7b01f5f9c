"""Readiness probe for Redis."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from whalli.adapters.redis.errors import translated
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.health import HealthProbe


class RedisHealthProbe(HealthProbe):
    name = "redis"

    def __init__(self, client: Redis, timeout: float = 1.0) -> None:
        self._client = client
        self._timeout = timeout

    async def check(self) -> None:
        with translated():
            answered = await asyncio.wait_for(self._client.ping(), self._timeout)
        if not answered:
            raise ServiceUnavailable("redis: no answer to PING")
