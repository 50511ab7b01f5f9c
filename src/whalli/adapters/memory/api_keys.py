"""API keys, in memory."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.api_keys import ApiKey
from whalli.domain.model.errors import ApiKeyNotFound
from whalli.domain.model.users import User
from whalli.ports.api_keys import ApiKeyRepository


class InMemoryApiKeyRepository(MemoryRepository, ApiKeyRepository):
    async def add(self, key: ApiKey) -> None:
        self._tx().insert("api_keys", key.id, key)

    async def get(self, key_id: UUID) -> ApiKey:
        key: ApiKey = self._tx().get("api_keys", key_id, ApiKeyNotFound)
        return key

    async def find_by_hash(self, key_hash: str) -> ApiKey | None:
        found: list[ApiKey] = self._tx().select("api_keys", lambda k: k.key_hash == key_hash)
        return found[0] if found else None

    async def find_by_hash_with_user(self, key_hash: str) -> tuple[ApiKey, User] | None:
        return self._with_user(await self.find_by_hash(key_hash))

    async def get_with_user(self, key_id: UUID) -> tuple[ApiKey, User] | None:
        return self._with_user(self._tx().find("api_keys", key_id))

    def _with_user(self, key: ApiKey | None) -> tuple[ApiKey, User] | None:
        if key is None:
            return None
        user: User | None = self._tx().find("users", key.user_id)
        return None if user is None else (key, user)

    async def update(self, key: ApiKey) -> None:
        self._tx().replace("api_keys", key.id, key, ApiKeyNotFound)

    async def record_use(self, key_id: UUID, now: datetime, *, stale_before: datetime) -> bool:
        tx = self._tx()
        key: ApiKey | None = tx.find("api_keys", key_id)
        if key is None or (key.last_used_at is not None and key.last_used_at >= stale_before):
            return False
        key.last_used_at = now
        tx.replace("api_keys", key.id, key, ApiKeyNotFound)
        return True

    async def list_for_user(self, user_id: UUID) -> list[ApiKey]:
        found: list[ApiKey] = self._tx().select("api_keys", lambda k: k.user_id == user_id)
        return sorted(found, key=lambda k: (k.created_at, k.id), reverse=True)

    async def revoke(self, key_id: UUID, now: datetime) -> bool:
        tx = self._tx()
        key: ApiKey | None = tx.find("api_keys", key_id)
        if key is None or key.revoked_at is not None:
            return False
        key.revoked_at = now
        tx.replace("api_keys", key.id, key, ApiKeyNotFound)
        return True

    async def revoke_all_for_user(self, user_id: UUID, now: datetime) -> int:
        tx = self._tx()
        active: list[ApiKey] = tx.select(
            "api_keys", lambda k: k.user_id == user_id and k.revoked_at is None
        )
        for key in active:
            key.revoked_at = now
            tx.replace("api_keys", key.id, key, ApiKeyNotFound)
        return len(active)
