"""Postgres fixtures shared by the integration suites.

``pg_pool`` is a pool on the shared test database, migrated once per session (the advisory lock
makes that safe when several sessions start together). ``uow_factory`` runs a test once on the
in-memory unit of work and once on Postgres; tests use unique ids so they can share the database.
``own_database`` is a migrated throwaway database, for a test that must see nobody else's rows or
sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

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


@pytest.fixture
def empty_database(stack_urls: StackUrls) -> Iterator[str]:
    """A throwaway database on the test server, no migration applied; dropped afterwards."""
    name = f"whalli_own_{uuid.uuid4().hex[:12]}"
    server = make_conninfo(stack_urls.database_url, dbname="postgres")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(stack_urls.database_url, dbname=name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def own_database(empty_database: str) -> str:
    Migrator(empty_database, default_migrations_dir()).apply()
    return empty_database
