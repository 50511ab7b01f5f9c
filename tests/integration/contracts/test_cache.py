from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from whalli.adapters.redis.cache import RedisCache
from whalli.adapters.redis.client import create_redis
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.cache import Cache

Elapse = Callable[[float], Awaitable[None]]


@pytest.fixture(params=["fake", "real", "lean"])
def backend(request: pytest.FixtureRequest) -> str:
    """Also "lean": the adapter sending through the lean multiplexed client, as the app does."""
    return str(request.param)


async def test_a_stored_value_is_returned_until_it_expires(cache: Cache, elapse: Elapse) -> None:
    await cache.set("k", b"value", ttl_seconds=1)
    assert await cache.get("k") == b"value"

    await elapse(1.2)

    assert await cache.get("k") is None


async def test_a_missing_key_reads_as_none(cache: Cache) -> None:
    assert await cache.get("never-set") is None


async def test_set_replaces_the_previous_value(cache: Cache) -> None:
    await cache.set("k", b"old", ttl_seconds=60)
    await cache.set("k", b"new", ttl_seconds=60)
    assert await cache.get("k") == b"new"


async def test_set_replaces_the_previous_expiry(cache: Cache, elapse: Elapse) -> None:
    await cache.set("k", b"short", ttl_seconds=1)
    await cache.set("k", b"long", ttl_seconds=60)
    await elapse(1.2)
    assert await cache.get("k") == b"long"


async def test_add_stores_only_when_the_key_is_absent(cache: Cache) -> None:
    assert await cache.add("claim", b"first", ttl_seconds=60) is True
    assert await cache.add("claim", b"second", ttl_seconds=60) is False
    assert await cache.get("claim") == b"first"


async def test_add_succeeds_again_once_the_previous_value_expired(
    cache: Cache, elapse: Elapse
) -> None:
    await cache.add("claim", b"first", ttl_seconds=1)
    await elapse(1.2)
    assert await cache.add("claim", b"second", ttl_seconds=60) is True
    assert await cache.get("claim") == b"second"


async def test_of_concurrent_adds_exactly_one_wins(cache: Cache) -> None:
    results = await asyncio.gather(*(cache.add("claim", b"x", ttl_seconds=60) for _ in range(20)))
    assert results.count(True) == 1


async def test_pop_returns_the_value_and_removes_it(cache: Cache) -> None:
    await cache.set("k", b"value", ttl_seconds=60)
    assert await cache.pop("k") == b"value"
    assert await cache.get("k") is None
    assert await cache.pop("k") is None


async def test_of_concurrent_pops_exactly_one_gets_the_value(cache: Cache) -> None:
    await cache.set("k", b"value", ttl_seconds=60)
    results = await asyncio.gather(*(cache.pop("k") for _ in range(20)))
    assert sorted(results, key=lambda r: r is None) == [b"value"] + [None] * 19


async def test_delete_removes_the_key_and_missing_keys_are_fine(cache: Cache) -> None:
    await cache.set("k", b"value", ttl_seconds=60)
    await cache.delete("k")
    await cache.delete("k")
    assert await cache.get("k") is None


async def test_binary_values_round_trip_unchanged(cache: Cache) -> None:
    value = bytes(range(256)) * 4
    await cache.set("bin", value, ttl_seconds=60)
    assert await cache.get("bin") == value


@pytest.mark.parametrize("ttl", [0, -5])
async def test_a_ttl_that_is_not_positive_is_rejected(cache: Cache, ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl_seconds must be positive"):
        await cache.set("k", b"v", ttl_seconds=ttl)
    with pytest.raises(ValueError, match="ttl_seconds must be positive"):
        await cache.add("k", b"v", ttl_seconds=ttl)


async def test_redis_caches_with_different_prefixes_do_not_see_each_other(
    redis_client: Redis, redis_prefix: str
) -> None:
    one = RedisCache(redis_client, prefix=redis_prefix + "one:")
    two = RedisCache(redis_client, prefix=redis_prefix + "two:")
    await one.set("k", b"1", ttl_seconds=60)
    assert await two.get("k") is None


async def test_an_unreachable_redis_raises_service_unavailable_without_the_password(
    closed_port: int,
) -> None:
    url = f"redis://:cache-s3cret-pw@127.0.0.1:{closed_port}/0"
    async for client in create_redis(url):
        cache = RedisCache(client)
        with pytest.raises(ServiceUnavailable, match=r"^redis: connection failed$") as caught:
            await cache.get("k")
        assert "cache-s3cret-pw" not in str(caught.value)
        assert str(closed_port) not in str(caught.value)
