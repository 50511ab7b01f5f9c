"""Storage of API keys (only hashes are stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.api_keys import ApiKey
from whalli.domain.model.users import User


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey) -> None: ...

    async def get(self, key_id: UUID) -> ApiKey:
        """Raises ``ApiKeyNotFound``."""
        ...

    async def find_by_hash(self, key_hash: str) -> ApiKey | None: ...

    async def find_by_hash_with_user(self, key_hash: str) -> tuple[ApiKey, User] | None:
        """The key with this hash and the user it belongs to, in one read (revoked and expired
        keys and disabled users included: the caller decides); ``None`` if no key has it."""
        ...

    async def get_with_user(self, key_id: UUID) -> tuple[ApiKey, User] | None:
        """The key ``key_id`` and the user it belongs to, in one read (revoked and expired keys
        and disabled users included: the caller decides); ``None`` if there is no such key."""
        ...

    async def update(self, key: ApiKey) -> None:
        """Raises ``ApiKeyNotFound``."""
        ...

    async def record_use(self, key_id: UUID, now: datetime, *, stale_before: datetime) -> bool:
        """Set the key's ``last_used_at`` to ``now`` if it is unset or before ``stale_before``;
        ``True`` if it was written. One statement, atomic by itself; only that column is written,
        so a concurrent revocation is never undone, and the condition is checked by the write
        itself, so of the requests racing to record a use only the first writes. An unknown key
        writes nothing (``False``)."""
        ...

    async def list_for_user(self, user_id: UUID) -> list[ApiKey]:
        """Newest first, revoked ones included."""
        ...

    async def revoke(self, key_id: UUID, now: datetime) -> bool:
        """Revoke the key at ``now`` unless it is revoked already (the first revocation time
        stays, as does a concurrent ``record_use``: only that column is written). False when it
        was revoked already or does not exist. One statement."""
        ...

    async def revoke_all_for_user(self, user_id: UUID, now: datetime) -> int: ...
