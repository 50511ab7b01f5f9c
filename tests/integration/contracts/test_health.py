"""Readiness probes of Redis and S3 against the real servers, dead ports and bad credentials."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from minio import Minio
from redis.asyncio import Redis

from whalli.adapters.embedded.redis import EmbeddedRedis
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.health import RedisHealthProbe
from whalli.adapters.redis.rate_limiter import RedisRateLimiter
from whalli.adapters.s3.client import create_minio
from whalli.adapters.s3.health import S3HealthProbe
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.services.check_readiness import CheckReadiness, Readiness

from .conftest import CONTRACT_BUCKET


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f":{password}@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def test_both_probes_report_ok_against_the_running_services(
    redis_client: Redis, minio_client: Minio, s3_storage: object
) -> None:
    readiness = await CheckReadiness(
        [RedisHealthProbe(redis_client), S3HealthProbe(minio_client, CONTRACT_BUCKET)]
    ).execute()

    assert readiness == Readiness(checks={"redis": "ok", "s3": "ok"})


async def test_the_redis_probe_reports_a_closed_port_without_the_password(
    closed_port: int,
) -> None:
    async for client in create_redis(f"redis://:probe-s3cret-pw@127.0.0.1:{closed_port}/0"):
        with pytest.raises(ServiceUnavailable, match=r"^redis: connection failed$") as caught:
            await RedisHealthProbe(client).check()
        assert "probe-s3cret-pw" not in repr(caught.value)


async def test_the_redis_probe_reports_a_wrong_password_without_echoing_it(
    stack_urls: StackUrls,
) -> None:
    async for client in create_redis(with_password(stack_urls.redis_url, "wrong-s3cret-pw")):
        with pytest.raises(ServiceUnavailable, match=r"^redis: authentication failed$") as caught:
            await RedisHealthProbe(client).check()
        assert "wrong-s3cret-pw" not in repr(caught.value)


async def test_readiness_names_a_dead_redis_and_a_dead_s3_separately(closed_port: int) -> None:
    minio = create_minio(f"http://127.0.0.1:{closed_port}", "whalli", "dead-s3cret-key")
    async for client in create_redis(f"redis://:dead-s3cret-pw@127.0.0.1:{closed_port}/0"):
        readiness = await CheckReadiness(
            [RedisHealthProbe(client), S3HealthProbe(minio, CONTRACT_BUCKET)]
        ).execute()

        assert readiness.checks == {
            "redis": "redis: connection failed",
            "s3": "s3: connection failed",
        }
        assert "s3cret" not in str(readiness.checks)


async def test_the_s3_probe_reports_a_missing_bucket(minio_client: Minio, unique: str) -> None:
    with pytest.raises(ServiceUnavailable, match=r"^s3: the bucket does not exist$"):
        await S3HealthProbe(minio_client, f"whalli-missing-{unique}").check()


async def test_a_restarted_redis_is_used_again_without_a_new_client(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, fast=True)
    state = await asyncio.to_thread(server.start, None)
    try:
        async for client in create_redis(state["url"]):
            probe, limiter = RedisHealthProbe(client), RedisRateLimiter(client)
            await probe.check()
            await limiter.hit("user:1", limit=5, window_seconds=60)

            await asyncio.to_thread(server.stop, state)
            with pytest.raises(ServiceUnavailable, match=r"^redis: connection failed$"):
                await probe.check()

            state = await asyncio.to_thread(server.start, state)
            await probe.check()
            # a fresh server has neither the count nor the script: EVALSHA reloads it
            assert (await limiter.hit("user:1", limit=5, window_seconds=60)).remaining == 4
    finally:
        await asyncio.to_thread(server.stop, state)
