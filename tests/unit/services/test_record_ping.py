from __future__ import annotations

from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.clock import ManualClock
from whalli.domain.model.jobs import Ping
from whalli.domain.services.record_ping import PING_TTL_SECONDS, RecordPing


async def test_a_ping_is_recorded_as_pong_under_its_token_for_ten_minutes() -> None:
    clock = ManualClock()
    cache = InMemoryCache(clock)

    await RecordPing(cache).execute(Ping(token="abc"))

    assert await cache.get("ping:abc") == b"pong"
    clock.advance(PING_TTL_SECONDS - 1)
    assert await cache.get("ping:abc") == b"pong"
    clock.advance(1)
    assert await cache.get("ping:abc") is None


async def test_recording_the_same_ping_twice_refreshes_it() -> None:
    clock = ManualClock()
    cache = InMemoryCache(clock)
    record = RecordPing(cache)

    await record.execute(Ping(token="abc"))
    clock.advance(PING_TTL_SECONDS - 1)
    await record.execute(Ping(token="abc"))
    clock.advance(PING_TTL_SECONDS - 1)

    assert await cache.get("ping:abc") == b"pong"
