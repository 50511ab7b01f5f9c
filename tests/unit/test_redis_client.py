"""The shared Redis client's settings (nothing connects: the pool opens connections lazily)."""

from __future__ import annotations

from importlib.metadata import version

from whalli.adapters.redis.client import create_redis


async def test_new_connections_reuse_the_driver_version_looked_up_once() -> None:
    async for client in create_redis("redis://127.0.0.1:1/0", max_connections=7):
        pool = client.connection_pool
        first, second = pool.make_connection(), pool.make_connection()

        assert first.driver_info is second.driver_info  # one lookup, shared
        assert first.driver_info is not None
        assert first.driver_info.lib_version == version("redis")
        assert pool.max_connections == 7
