"""``Cache`` on Redis strings with expiry."""

from __future__ import annotations

from redis.asyncio import Redis

from whalli.adapters.redis._values import as_bytes, check_ttl
from whalli.adapters.redis.errors import translated
from whalli.ports.cache import Cache


class RedisCache(Cache):
    def __init__(self, client: Redis, prefix: str = "whalli:cache:") -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        with translated():
            return as_bytes(await self._client.get(self._key(key)))

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        check_ttl(ttl_seconds)
        with translated():
            await self._client.set(self._key(key), value, ex=ttl_seconds)

    async def add(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        check_ttl(ttl_seconds)
        with translated():
            stored = await self._client.set(self._key(key), value, ex=ttl_seconds, nx=True)
        return bool(stored)

    async def pop(self, key: str) -> bytes | None:
        # GETDEL (Redis >= 6.2) reads and deletes in one command, so only one caller wins.
        with translated():
            return as_bytes(await self._client.getdel(self._key(key)))

    async def delete(self, key: str) -> None:
        with translated():
            await self._client.delete(self._key(key))
