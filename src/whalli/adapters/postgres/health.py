"""Readiness of Postgres: a trivial query through the pool within a short timeout."""

from __future__ import annotations

import asyncio

import psycopg

from whalli.adapters.postgres.pool import PostgresPool
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.health import HealthProbe


class PostgresHealthProbe(HealthProbe):
    name = "postgres"

    def __init__(self, pool: PostgresPool, timeout: float = 2.0) -> None:
        self._pool = pool
        self._timeout = timeout

    async def check(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._pool.connection(timeout=self._timeout) as conn:
                    await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError) as e:
            # The driver's message would name the host; the reason stays generic on purpose.
            raise ServiceUnavailable("unreachable") from e
