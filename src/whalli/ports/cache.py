"""A shared key-value cache with expiry (identical-prompt replies, short-lived state)."""

from __future__ import annotations

from typing import Protocol


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The value, or ``None`` when missing or expired. Raises ``ServiceUnavailable``."""
        ...

    async def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        """Store ``value`` for ``ttl_seconds`` (> 0), replacing any previous value."""
        ...

    async def add(self, key: str, value: bytes, ttl_seconds: int) -> bool:
        """Store only if absent; ``True`` when this call stored it (a single-use claim)."""
        ...

    async def pop(self, key: str) -> bytes | None:
        """Return and delete atomically: of two concurrent callers, one gets the value."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the key; missing keys are fine."""
        ...
