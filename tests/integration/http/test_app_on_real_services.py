"""The real composition root behind the real HTTP app, on the real embedded services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from whalli.adapters.embedded.redis import EmbeddedRedis
from whalli.adapters.embedded.stack import StackUrls
from whalli.config import load_settings
from whalli.entrypoints.http.asgi import build_app


def _env(urls: StackUrls, unique: str, **overrides: str) -> dict[str, str]:
    return {
        "WHALLI_ENV": "test",
        "WHALLI_DATABASE_URL": urls.database_url,
        "WHALLI_REDIS_URL": urls.redis_url,
        "WHALLI_S3_ENDPOINT": urls.s3_endpoint,
        "WHALLI_S3_ACCESS_KEY": urls.s3_access_key,
        "WHALLI_S3_SECRET_KEY": urls.s3_secret_key,
        "WHALLI_S3_BUCKET": f"ready-{unique}",
        **overrides,
    }


@pytest.fixture
async def client(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = build_app(load_settings(_env(stack_urls, unique), dotenv=None))
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_readiness_reports_all_three_services_ok(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/health/ready")
    assert response.status_code == 200
    assert response.json() == {"postgres": "ok", "redis": "ok", "s3": "ok"}


async def test_startup_creates_the_configured_bucket(
    client: AsyncTestClient[Litestar], unique: str
) -> None:
    assert client.app is not None
    response = await client.get("/api/health/ready")
    assert response.json()["s3"] == "ok"


async def test_an_unknown_route_is_a_problem_document_with_a_request_id(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/nothing-here", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["status"] == 404


async def test_readiness_names_redis_when_it_stops_and_recovers_without_a_restart(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    own_redis = EmbeddedRedis(tmp_path, fast=True)
    state = own_redis.start(None)
    try:
        settings = load_settings(
            _env(stack_urls, unique, WHALLI_REDIS_URL=state["url"]), dotenv=None
        )
        async with AsyncTestClient(app=build_app(settings)) as client:
            assert (await client.get("/api/health/ready")).status_code == 200

            own_redis.stop(state)
            down = await client.get("/api/health/ready")
            assert down.status_code == 503
            body = down.json()
            assert body["redis"] != "ok"
            assert body["postgres"] == "ok"
            assert body["s3"] == "ok"
            assert state["url"].split("@")[0].split(":")[-1] not in down.text

            state = own_redis.start(state)  # same port, same password
            up = await client.get("/api/health/ready")
            assert up.status_code == 200
            assert up.json()["redis"] == "ok"
    finally:
        own_redis.stop(state)
