"""In-process ``Cache`` with the same expiry rules as the Redis one."""

from __future__ import annotations

from datetime import datetime, timedelta

from whalli.ports.cache import Cache
from whalli.ports.clock import Clock


class InMemoryCache(Cache):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[bytes, datetime]] = {}

    def _live(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if self._clock.now() >= expires_at:
            del self._entries[key]
            return None
        return value

    def _store(self, key: str, value: bytes, ttl_seconds: int) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self._entries[key] = (bytes(value), self._clock.now() + timedelta(seconds=ttl_seconds))

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        self._store(key, value, ttl_seconds)

    async def add(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        if self._live(key) is not None:
            return False
        self._store(key, value, ttl_seconds)
        return True

    async def pop(self, key: str) -> bytes | None:
        value = self._live(key)
        self._entries.pop(key, None)
        return value

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)
