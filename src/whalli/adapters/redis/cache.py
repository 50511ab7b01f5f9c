"""``Cache`` on Redis strings with expiry.

With ``lean`` (the app's wiring) its commands go through the lean multiplexed client
(``adapters/redis/resp``): the prompt cache is read on every chat request's path. Without it,
through redis-py.
"""

from __future__ import annotations

from redis.asyncio import Redis

from whalli.adapters.redis._values import as_bytes, check_ttl
from whalli.adapters.redis.errors import translated
from whalli.adapters.redis.resp import Arg, Reply, RespClient
from whalli.ports.cache import Cache


class RedisCache(Cache):
    def __init__(
        self, client: Redis, prefix: str = "whalli:cache:", *, lean: RespClient | None = None
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._lean = lean

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def _run(self, *args: Arg) -> Reply:
        lean = self._lean
        if lean is not None:
            return await lean.execute(*args)
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def get(self, key: str) -> bytes | None:
        with translated():
            return as_bytes(await self._run("GET", self._key(key)))

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        check_ttl(ttl_seconds)
        with translated():
            await self._run("SET", self._key(key), value, "EX", ttl_seconds)

    async def add(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        check_ttl(ttl_seconds)
        with translated():
            stored = await self._run("SET", self._key(key), value, "EX", ttl_seconds, "NX")
        return bool(stored)

    async def pop(self, key: str) -> bytes | None:
        # GETDEL (Redis >= 6.2) reads and deletes in one command, so only one caller wins.
        with translated():
            return as_bytes(await self._run("GETDEL", self._key(key)))

    async def delete(self, key: str) -> None:
        with translated():
            await self._run("DEL", self._key(key))
