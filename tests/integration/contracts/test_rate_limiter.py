from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.rate_limiter import RedisRateLimiter
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.rate_limiter import RateDecision, RateLimiter

Elapse = Callable[[float], Awaitable[None]]


@pytest.fixture(params=["fake", "real", "lean"])
def backend(request: pytest.FixtureRequest) -> str:
    """Also "lean": the adapter sending through the lean multiplexed client, as the app does."""
    return str(request.param)


async def test_hits_within_the_limit_are_allowed_and_count_down(
    rate_limiter: RateLimiter,
) -> None:
    decisions = [await rate_limiter.hit("user:1", limit=3, window_seconds=60) for _ in range(3)]

    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert {d.limit for d in decisions} == {3}


async def test_a_hit_over_the_limit_is_denied_and_says_when_to_retry(
    rate_limiter: RateLimiter,
) -> None:
    for _ in range(2):
        await rate_limiter.hit("user:1", limit=2, window_seconds=60)

    denied = await rate_limiter.hit("user:1", limit=2, window_seconds=60)

    assert denied.allowed is False
    assert denied.remaining == 0
    assert 1 <= denied.reset_seconds <= 60


async def test_the_first_hit_resets_after_the_whole_window(rate_limiter: RateLimiter) -> None:
    decision = await rate_limiter.hit("user:1", limit=5, window_seconds=30)
    assert decision == RateDecision(allowed=True, limit=5, remaining=4, reset_seconds=30)


async def test_exactly_the_limit_of_fifty_concurrent_hits_is_allowed(
    rate_limiter: RateLimiter,
) -> None:
    decisions = await asyncio.gather(
        *(rate_limiter.hit("burst", limit=10, window_seconds=60) for _ in range(50))
    )

    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


async def test_keys_are_counted_separately(rate_limiter: RateLimiter) -> None:
    await rate_limiter.hit("user:1", limit=1, window_seconds=60)
    assert (await rate_limiter.hit("user:1", limit=1, window_seconds=60)).allowed is False
    assert (await rate_limiter.hit("user:2", limit=1, window_seconds=60)).allowed is True


async def test_hits_are_allowed_again_once_the_window_has_passed(
    rate_limiter: RateLimiter, elapse: Elapse
) -> None:
    for _ in range(3):
        await rate_limiter.hit("user:1", limit=2, window_seconds=1)

    await elapse(1.2)

    again = await rate_limiter.hit("user:1", limit=2, window_seconds=1)
    assert again.allowed is True
    assert again.remaining == 1


async def test_denied_hits_do_not_extend_the_wait(
    rate_limiter: RateLimiter, elapse: Elapse
) -> None:
    await rate_limiter.hit("user:1", limit=1, window_seconds=1)
    for _ in range(5):
        await rate_limiter.hit("user:1", limit=1, window_seconds=1)

    await elapse(1.2)

    assert (await rate_limiter.hit("user:1", limit=1, window_seconds=1)).allowed is True


@pytest.mark.parametrize(
    ("limit", "window", "message"),
    [
        (0, 60, "limit must be at least 1"),
        (5, 0, "window_seconds must be at least 1"),
    ],
)
async def test_a_limit_or_window_below_one_is_rejected(
    rate_limiter: RateLimiter, limit: int, window: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await rate_limiter.hit("user:1", limit=limit, window_seconds=window)


async def test_two_separate_redis_clients_share_the_count(
    redis_client: Redis, redis_prefix: str, stack_urls: StackUrls
) -> None:
    async for other_client in create_redis(stack_urls.redis_url):
        one = RedisRateLimiter(redis_client, prefix=redis_prefix + "rate:")
        two = RedisRateLimiter(other_client, prefix=redis_prefix + "rate:")

        decisions = await asyncio.gather(
            *(limiter.hit("shared", limit=7, window_seconds=60) for limiter in [one, two] * 10)
        )

        assert sum(d.allowed for d in decisions) == 7


async def test_an_unreachable_redis_raises_service_unavailable_without_the_password(
    closed_port: int,
) -> None:
    url = f"redis://:rate-s3cret-pw@127.0.0.1:{closed_port}/0"
    async for client in create_redis(url):
        limiter = RedisRateLimiter(client)
        with pytest.raises(ServiceUnavailable, match=r"^redis: connection failed$") as caught:
            await limiter.hit("user:1", limit=5, window_seconds=60)
        assert "rate-s3cret-pw" not in str(caught.value)


async def test_a_refund_takes_back_one_hit_of_the_open_window_only(
    rate_limiter: RateLimiter,
) -> None:
    for _ in range(3):
        await rate_limiter.hit("user:1", limit=3, window_seconds=60)
    await rate_limiter.refund("user:1")
    await rate_limiter.refund("user:never-hit")  # nothing to take back: nothing made

    again = await rate_limiter.hit("user:1", limit=3, window_seconds=60)
    fresh = await rate_limiter.hit("user:never-hit", limit=3, window_seconds=60)

    assert (again.allowed, again.remaining) == (True, 0)
    assert fresh == RateDecision(allowed=True, limit=3, remaining=2, reset_seconds=60)
