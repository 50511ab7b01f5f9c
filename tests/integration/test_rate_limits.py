"""Request rate limits through the HTTP app, counted in the real Redis."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from litestar import Litestar
from redis.asyncio import Redis
from structlog.testing import capture_logs

from tests.unit.http.fakes import FakeContainer
from tests.unit.http.rate_limited_app import TEST_USER_HEADER, rate_limited_app
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.rate_limiter import RedisRateLimiter
from whalli.config import Settings
from whalli.domain.model.errors import RateLimited

redis_resource = asynccontextmanager(create_redis)
AppFactory = Callable[..., Litestar]

RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def http(app: Litestar, peer: str = "203.0.113.10") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


def budget(response: httpx.Response) -> tuple[str | None, ...]:
    return tuple(response.headers.get(name) for name in RATE_HEADERS)


@pytest.fixture
async def redis_client(stack_urls: StackUrls) -> AsyncIterator[Redis]:
    async with redis_resource(stack_urls.redis_url) as client:
        yield client


@pytest.fixture
def make_app(redis_client: Redis, unique: str) -> AppFactory:
    """An app counting in the shared Redis under this test's own prefix."""

    def make(client: Redis = redis_client, **settings: Any) -> Litestar:
        limiter = RedisRateLimiter(client, prefix=f"whalli:test:{unique}:rate:")
        container = FakeContainer(Settings(env="test", **settings), [], rate_limiter=limiter)
        return rate_limited_app(container)

    return make


@pytest.fixture
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_exactly_the_limit_of_fifty_concurrent_requests_pass(make_app: AppFactory) -> None:
    async with http(make_app()) as client:
        responses = await asyncio.gather(*(client.get("/api/limited/ok") for _ in range(50)))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 20
    assert statuses.count(429) == 30
    passed = sorted(int(r.headers["ratelimit-remaining"]) for r in responses if r.is_success)
    assert passed == list(range(20))
    assert all(r.headers["ratelimit-remaining"] == "0" for r in responses if not r.is_success)


async def test_two_app_instances_with_their_own_redis_clients_share_the_count(
    make_app: AppFactory, stack_urls: StackUrls
) -> None:
    async with redis_resource(stack_urls.redis_url) as other_client:
        one, two = http(make_app()), http(make_app(other_client))
        async with one, two:
            responses = await asyncio.gather(*(c.get("/api/limited/ok") for c in [one, two] * 15))

    assert [r.status_code for r in responses].count(200) == 20


async def test_the_budget_and_retry_headers_tell_the_client_where_it_stands(
    make_app: AppFactory,
) -> None:
    async with http(make_app(rate_limit_ip_per_min=2)) as client:
        first = await client.get("/api/limited/ok")
        second = await client.get("/api/limited/missing")
        refused = await client.get("/api/limited/ok")

    assert budget(first) == ("2", "1", "60")
    assert second.status_code == 404
    assert budget(second)[:2] == ("2", "0")
    assert refused.status_code == 429
    limit, remaining, reset = budget(refused)
    assert (limit, remaining) == ("2", "0")
    assert refused.headers["retry-after"] == reset
    assert 1 <= int(reset or 0) <= 60


async def test_an_authenticated_user_is_counted_by_user_not_by_ip(make_app: AppFactory) -> None:
    app = make_app(rate_limit_user_per_min=3, rate_limit_ip_per_min=1)
    user = {TEST_USER_HEADER: str(uuid.uuid4())}
    async with http(app, "203.0.113.1") as here, http(app, "203.0.113.2") as there:
        statuses = [
            (await c.get("/api/limited/ok", headers=user)).status_code
            for c in [here, there, here, there]
        ]

    assert statuses == [200, 200, 200, 429]


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(make_app: AppFactory) -> None:
    app = make_app(rate_limit_ip_per_min=2, trusted_proxies="10.0.0.0/8")
    async with http(app, "203.0.113.50") as client:
        statuses = [
            (
                await client.get("/api/limited/ok", headers={"X-Forwarded-For": f"198.51.100.{n}"})
            ).status_code
            for n in range(3)
        ]

    assert statuses == [200, 200, 429]


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(make_app: AppFactory) -> None:
    app = make_app(rate_limit_ip_per_min=2, trusted_proxies="10.0.0.0/8")

    async def status(client_ip: str) -> int:
        # The client's own spoofed entry first, then what our proxies appended.
        header = f"192.0.2.99, {client_ip}, 10.1.1.1"
        async with http(app, "10.0.0.1") as proxy:
            response = await proxy.get("/api/limited/ok", headers={"X-Forwarded-For": header})
        return response.status_code

    statuses = [await status(ip) for ip in ["198.51.100.1", "198.51.100.1", "198.51.100.2"]]
    assert statuses == [200, 200, 200]
    assert await status("198.51.100.1") == 429


async def test_guessing_one_accounts_password_does_not_lock_its_owner_out_elsewhere(
    redis_client: Redis, unique: str
) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=f"whalli:test:{unique}:rate:")
    container = FakeContainer(
        Settings(env="test", rate_limit_login_per_account_ip="3/60"), [], rate_limiter=limiter
    )
    limits = await container.request_limits()
    for _ in range(3):
        await limits.check_login("owner@example.com", "203.0.113.66")

    with pytest.raises(RateLimited, match="Too many requests") as refused:
        await limits.check_login("OWNER@example.com", "203.0.113.66")

    assert 1 <= int(str(refused.value.details["retry_after"])) <= 60
    owner = await limits.check_login("owner@example.com", "198.51.100.20")
    assert owner.allowed is True


async def _errors_counted(client: httpx.AsyncClient) -> float:
    text = (await client.get("/api/metrics")).text
    match = re.search(r"^whalli_rate_limiter_errors_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_an_unreachable_redis_lets_requests_through_and_counts_the_error(
    closed_port: int, unique: str
) -> None:
    async with redis_resource(f"redis://127.0.0.1:{closed_port}/0", retries=0) as down:
        limiter = RedisRateLimiter(down, prefix=f"whalli:test:{unique}:rate:")
        app = rate_limited_app(FakeContainer(Settings(env="test"), [], rate_limiter=limiter))
        async with http(app) as client:
            before = await _errors_counted(client)
            with capture_logs() as logs:
                responses = [await client.get("/api/limited/ok") for _ in range(3)]
            after = await _errors_counted(client)

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert budget(responses[0]) == (None, None, None)
    assert after - before == 3
    # One warning for the burst: the log is throttled, the metric counts every failure.
    warnings = [line for line in logs if line["event"] == "rate_limiter_unavailable"]
    assert [(w["log_level"], w["reason"]) for w in warnings] == [
        ("warning", "redis: connection failed")
    ]


async def test_an_unreachable_redis_is_a_503_when_failing_closed(
    closed_port: int, unique: str
) -> None:
    async with redis_resource(f"redis://127.0.0.1:{closed_port}/0", retries=0) as down:
        limiter = RedisRateLimiter(down, prefix=f"whalli:test:{unique}:rate:")
        settings = Settings(env="test", rate_limit_fail_open=False)
        app = rate_limited_app(FakeContainer(settings, [], rate_limiter=limiter))
        async with http(app) as client:
            response = await client.get("/api/limited/ok")
            health = await client.get("/api/health")

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert health.status_code == 200
