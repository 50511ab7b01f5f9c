"""API keys in Postgres."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import (
    PostgresRepository,
    Row,
    assignments,
    columns,
    placeholders,
)
from whalli.adapters.postgres.users import user_columns
from whalli.domain.model.api_keys import ApiKey
from whalli.domain.model.errors import ApiKeyNotFound
from whalli.domain.model.users import User
from whalli.ports.api_keys import ApiKeyRepository

_COLUMNS = (
    "id",
    "user_id",
    "name",
    "key_hash",
    "display_prefix",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
)
_SELECT = f"SELECT {columns(_COLUMNS)} FROM api_keys"
_INSERT = f"INSERT INTO api_keys ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)})"
_UPDATE = f"UPDATE api_keys SET {assignments(_COLUMNS[1:])} WHERE id = %(id)s"
# The key and its user in one statement (``k_``/``u_`` prefixes keep the shared names apart).
_WITH_USER = (
    "SELECT "
    + ", ".join([f"k.{c} AS k_{c}" for c in _COLUMNS] + [user_columns("u", "u_")])
    + " FROM api_keys k JOIN users u ON u.id = k.user_id"
)
_BY_HASH_WITH_USER = f"{_WITH_USER} WHERE k.key_hash = %(hash)s"
_BY_ID_WITH_USER = f"{_WITH_USER} WHERE k.id = %(id)s"
_RECORD_USE = (
    "UPDATE api_keys SET last_used_at = %(now)s WHERE id = %(id)s"
    " AND (last_used_at IS NULL OR last_used_at < %(stale_before)s)"
)
_REVOKE_ALL = (
    "UPDATE api_keys SET revoked_at = %(now)s WHERE user_id = %(user_id)s AND revoked_at IS NULL"
)


def _part(row: Row, prefix: str) -> Row:
    return {k.removeprefix(prefix): v for k, v in row.items() if k.startswith(prefix)}


def _with_user(row: Row | None) -> tuple[ApiKey, User] | None:
    if row is None:
        return None
    return msgspec.convert(_part(row, "k_"), ApiKey), msgspec.convert(_part(row, "u_"), User)


class PostgresApiKeyRepository(PostgresRepository, ApiKeyRepository):
    async def add(self, key: ApiKey) -> None:
        await self._run(_INSERT, msgspec.structs.asdict(key))

    async def get(self, key_id: UUID) -> ApiKey:
        row = await self._one(f"{_SELECT} WHERE id = %(id)s", {"id": key_id})
        if row is None:
            raise ApiKeyNotFound()
        return msgspec.convert(row, ApiKey)

    async def find_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self._one(f"{_SELECT} WHERE key_hash = %(hash)s", {"hash": key_hash})
        return None if row is None else msgspec.convert(row, ApiKey)

    async def find_by_hash_with_user(self, key_hash: str) -> tuple[ApiKey, User] | None:
        return _with_user(await self._one(_BY_HASH_WITH_USER, {"hash": key_hash}))

    async def get_with_user(self, key_id: UUID) -> tuple[ApiKey, User] | None:
        return _with_user(await self._one(_BY_ID_WITH_USER, {"id": key_id}))

    async def update(self, key: ApiKey) -> None:
        if await self._run(_UPDATE, msgspec.structs.asdict(key)) == 0:
            raise ApiKeyNotFound()

    async def record_use(self, key_id: UUID, now: datetime, *, stale_before: datetime) -> bool:
        params = {"id": key_id, "now": now, "stale_before": stale_before}
        return await self._run(_RECORD_USE, params) == 1

    async def list_for_user(self, user_id: UUID) -> list[ApiKey]:
        rows = await self._all(
            f"{_SELECT} WHERE user_id = %(user_id)s ORDER BY created_at DESC, id DESC",
            {"user_id": user_id},
        )
        return [msgspec.convert(r, ApiKey) for r in rows]

    async def revoke(self, key_id: UUID, now: datetime) -> bool:
        query = "UPDATE api_keys SET revoked_at = %(now)s WHERE id = %(id)s AND revoked_at IS NULL"
        return await self._run(query, {"id": key_id, "now": now}) == 1

    async def revoke_all_for_user(self, user_id: UUID, now: datetime) -> int:
        return await self._run(_REVOKE_ALL, {"now": now, "user_id": user_id})
