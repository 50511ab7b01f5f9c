"""The pool's checkout check, against the real server: dead connections are never handed out."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import psycopg
import pytest

from whalli.adapters.postgres.pool import PostgresPool, create_pool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork

from .entities import a_user

pool_resource = asynccontextmanager(create_pool)


async def backend_pid(pool: PostgresPool) -> int:
    async with pool.connection() as conn:
        return conn.info.backend_pid


async def terminate(url: str, pid: int) -> None:
    """End that server session and wait until its backend has gone (and said so to the client)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        while True:
            cur = await admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            row = await cur.fetchone()
            if row is not None and row[0] == 0:
                return
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "ping_after_idle",
    [pytest.param(None, id="default settings"), pytest.param(3600.0, id="never idle long enough")],
)
async def test_a_connection_terminated_while_idle_is_replaced_before_a_use_case_gets_it(
    migrated_database_url: str, ping_after_idle: float | None
) -> None:
    options = {} if ping_after_idle is None else {"ping_after_idle": ping_after_idle}
    async with pool_resource(migrated_database_url, min_size=1, max_size=1, **options) as pool:
        await pool.wait()
        user = a_user()
        async with PostgresUnitOfWork(pool) as uow:
            await uow.users.add(user)
            await uow.commit()
        dead = await backend_pid(pool)

        await terminate(migrated_database_url, dead)

        async with PostgresUnitOfWork(pool) as uow:
            assert await uow.users.get(user.id) == user
        assert await backend_pid(pool) != dead


async def test_a_connection_in_use_moments_ago_is_handed_out_again(
    migrated_database_url: str,
) -> None:
    async with pool_resource(migrated_database_url, min_size=1, max_size=1) as pool:
        await pool.wait()
        first = await backend_pid(pool)

        assert [await backend_pid(pool) for _ in range(3)] == [first] * 3
