"""The async connection pool, as a lifecycle resource for the container."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

PostgresPool: TypeAlias = AsyncConnectionPool[AsyncConnection[TupleRow]]


async def create_pool(
    url: str, min_size: int = 1, max_size: int = 10, *, acquire_timeout: float = 10.0
) -> AsyncIterator[PostgresPool]:
    """Yield an opened pool and close it on exit (a dependency-injector ``Resource``).

    The pool opens without waiting for its first connection, so the application starts (and
    reports "not ready") while Postgres is down; ``acquire_timeout`` bounds how long a caller
    waits for a connection. Sessions run in UTC so timestamps read back as UTC.
    """
    pool: PostgresPool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        timeout=acquire_timeout,
        kwargs={"options": "-c TimeZone=UTC", "connect_timeout": 5, "application_name": "whalli"},
        # A connection broken by a server restart is noticed before a use case gets it.
        check=AsyncConnectionPool.check_connection,
        name="whalli",
    )
    await pool.open(wait=False)
    try:
        yield pool
    finally:
        await pool.close()
