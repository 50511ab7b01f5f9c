from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.fakes import FakeContainer
from tests.unit.http.rate_limited_app import TEST_USER_HEADER, rate_limited_app
from whalli.config import Settings
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.rate_limiter import RateDecision, RateLimiter

RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


class DownRateLimiter(RateLimiter):
    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        raise ServiceUnavailable("redis: connection failed")


def limits(response: httpx.Response) -> tuple[str | None, ...]:
    return tuple(response.headers.get(name) for name in RATE_HEADERS)


@pytest.fixture
def container() -> FakeContainer:
    settings = Settings(env="test", rate_limit_ip_per_min=3, rate_limit_user_per_min=5)
    return FakeContainer(settings, [])


@pytest.fixture
async def client(container: FakeContainer) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=rate_limited_app(container)) as client:
        yield client


async def test_every_response_of_a_limited_route_reports_the_budget_errors_included(
    client: AsyncTestClient[Litestar],
) -> None:
    ok = await client.get("/api/limited/ok")
    missing = await client.get("/api/limited/missing")

    assert ok.status_code == 200
    assert limits(ok) == ("3", "2", "60")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert limits(missing) == ("3", "1", "60")


async def test_a_request_over_the_budget_is_a_429_problem_saying_when_to_retry(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    for _ in range(3):
        await client.get("/api/limited/ok")
    container.clock.advance(15)

    refused = await client.get("/api/limited/ok")

    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["retryAfter"] == 45
    assert refused.headers["retry-after"] == "45"
    assert limits(refused) == ("3", "0", "45")


async def test_the_budget_comes_back_when_the_window_ends(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    for _ in range(4):
        await client.get("/api/limited/ok")

    container.clock.advance(60)

    again = await client.get("/api/limited/ok")
    assert again.status_code == 200
    assert limits(again) == ("3", "2", "60")


async def test_an_authenticated_user_has_its_own_larger_budget(
    client: AsyncTestClient[Litestar],
) -> None:
    for _ in range(3):
        await client.get("/api/limited/ok")
    user = {TEST_USER_HEADER: str(uuid.uuid4())}

    responses = [await client.get("/api/limited/ok", headers=user) for _ in range(6)]

    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert limits(responses[0]) == ("5", "4", "60")


@pytest.mark.parametrize(
    "path", ["/api/health", "/api/metrics", "/api/docs/openapi.json", "/api/limited/open"]
)
async def test_health_metrics_docs_and_opted_out_routes_are_never_limited(
    client: AsyncTestClient[Litestar], path: str
) -> None:
    responses = [await client.get(path) for _ in range(5)]

    assert [r.status_code for r in responses] == [200] * 5
    assert all(limits(r) == (None, None, None) for r in responses)


async def test_disabled_limits_neither_refuse_nor_report() -> None:
    settings = Settings(env="test", rate_limit_ip_per_min=1, rate_limit_enabled=False)
    async with AsyncTestClient(app=rate_limited_app(FakeContainer(settings, []))) as client:
        responses = [await client.get("/api/limited/ok") for _ in range(3)]

    assert [r.status_code for r in responses] == [200] * 3
    assert limits(responses[0]) == (None, None, None)


async def test_an_unreachable_store_lets_requests_through_when_failing_open() -> None:
    container = FakeContainer(Settings(env="test"), [], rate_limiter=DownRateLimiter())
    async with AsyncTestClient(app=rate_limited_app(container)) as client:
        response = await client.get("/api/limited/ok")

    assert response.status_code == 200
    assert limits(response) == (None, None, None)


async def test_an_unreachable_store_is_a_503_when_failing_closed() -> None:
    settings = Settings(env="test", rate_limit_fail_open=False)
    container = FakeContainer(settings, [], rate_limiter=DownRateLimiter())
    async with AsyncTestClient(app=rate_limited_app(container)) as client:
        response = await client.get("/api/limited/ok")

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
