"""Postgres fixtures shared by the integration suites.

``pg_pool`` is a pool on the shared test database, migrated once per session (the advisory lock
makes that safe when several sessions start together). ``uow_factory`` runs a test once on the
in-memory unit of work and once on Postgres; tests use unique ids so they can share the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.postgres.migrator import Migrator, default_migrations_dir
from whalli.adapters.postgres.pool import PostgresPool, create_pool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.ports.unit_of_work import UnitOfWork

UowFactory = Callable[[], UnitOfWork]

pool_resource = asynccontextmanager(create_pool)


@pytest.fixture(scope="session")
def migrated_database_url(stack_urls: StackUrls) -> str:
    Migrator(stack_urls.database_url, default_migrations_dir()).apply()
    return stack_urls.database_url


@pytest.fixture(scope="session")
async def pg_pool(migrated_database_url: str) -> AsyncIterator[PostgresPool]:
    async with pool_resource(migrated_database_url, min_size=1, max_size=10) as pool:
        await pool.wait()
        yield pool


@pytest.fixture(params=["memory", "postgres"])
def uow_factory(request: pytest.FixtureRequest) -> UowFactory:
    if request.param == "memory":
        store = MemoryStore()
        return lambda: InMemoryUnitOfWork(store)
    pool: PostgresPool = request.getfixturevalue("pg_pool")
    return lambda: PostgresUnitOfWork(pool)
