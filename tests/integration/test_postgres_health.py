"""The Postgres readiness probe and the pool's start-up, against the real server and a dead port."""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager

import pytest
from psycopg.conninfo import make_conninfo

from whalli.adapters.postgres.health import PostgresHealthProbe
from whalli.adapters.postgres.pool import PostgresPool, create_pool
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.services.check_readiness import CheckReadiness, Readiness

pool_resource = asynccontextmanager(create_pool)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_probe_reports_ok_against_the_running_server(pg_pool: PostgresPool) -> None:
    readiness = await CheckReadiness([PostgresHealthProbe(pg_pool)]).execute()

    assert readiness == Readiness(checks={"postgres": "ok"})


async def test_the_pool_starts_while_postgres_is_down_and_the_probe_says_so() -> None:
    url = f"postgresql://whalli:pg-s3cret-pw@127.0.0.1:{closed_port()}/whalli"
    async with pool_resource(url, acquire_timeout=0.5) as pool:
        with pytest.raises(ServiceUnavailable, match=r"^unreachable$") as caught:
            await PostgresHealthProbe(pool, timeout=0.5).check()

    assert "pg-s3cret-pw" not in repr(caught.value)
    assert "pg-s3cret-pw" not in repr(caught.value.__cause__)


async def test_a_wrong_password_is_reported_without_echoing_it(migrated_database_url: str) -> None:
    url = make_conninfo(migrated_database_url, password="wrong-s3cret-pw")
    async with pool_resource(url, acquire_timeout=0.5) as pool:
        readiness = await CheckReadiness([PostgresHealthProbe(pool, timeout=0.5)]).execute()

    assert readiness.checks == {"postgres": "unreachable"}
    assert "s3cret" not in str(readiness)
