"""Refresh tokens in Postgres (``find_by_hash_for_update`` holds a row lock)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import PostgresRepository, columns, placeholders
from whalli.domain.model.errors import NotFound
from whalli.domain.model.tokens import RefreshToken
from whalli.ports.refresh_tokens import RefreshTokenRepository

NOT_FOUND_MESSAGE = "Refresh token not found."

_COLUMNS = (
    "id",
    "user_id",
    "family_id",
    "token_hash",
    "parent_id",
    "created_at",
    "expires_at",
    "used_at",
    "revoked_at",
)
_INSERT = f"INSERT INTO refresh_tokens ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)})"
# Under READ COMMITTED a second FOR UPDATE waits for the holder, then reads the committed row:
# of two concurrent refreshes of one token, the second sees it spent.
_FIND_FOR_UPDATE = (
    f"SELECT {columns(_COLUMNS)} FROM refresh_tokens WHERE token_hash = %(hash)s FOR UPDATE"
)
_UPDATE = (
    "UPDATE refresh_tokens SET used_at = %(used_at)s, revoked_at = %(revoked_at)s WHERE id = %(id)s"
)
_REVOKE = "UPDATE refresh_tokens SET revoked_at = %(now)s WHERE revoked_at IS NULL AND "
_FAMILY_ACTIVE = (
    "SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = %(family_id)s "
    "AND revoked_at IS NULL AND expires_at > %(now)s) AS active"
)

_SIGNED_IN_AT = (
    "SELECT min(created_at) AS signed_in_at FROM refresh_tokens WHERE family_id = %(family_id)s"
)


class PostgresRefreshTokenRepository(PostgresRepository, RefreshTokenRepository):
    async def add(self, token: RefreshToken) -> None:
        await self._run(_INSERT, msgspec.structs.asdict(token))

    async def owner_of(self, token_hash: str) -> UUID | None:
        query = "SELECT user_id FROM refresh_tokens WHERE token_hash = %(hash)s"
        row = await self._one(query, {"hash": token_hash})
        return None if row is None else UUID(str(row["user_id"]))

    async def find_by_hash_for_update(self, token_hash: str) -> RefreshToken | None:
        row = await self._one(_FIND_FOR_UPDATE, {"hash": token_hash})
        return None if row is None else msgspec.convert(row, RefreshToken)

    async def update(self, token: RefreshToken) -> None:
        if await self._run(_UPDATE, msgspec.structs.asdict(token)) == 0:
            raise NotFound(NOT_FOUND_MESSAGE)

    async def revoke_family(self, family_id: UUID, now: datetime) -> int:
        query = _REVOKE + "family_id = %(family_id)s"
        return await self._run(query, {"now": now, "family_id": family_id})

    async def revoke_all_for_user(self, user_id: UUID, now: datetime) -> int:
        query = _REVOKE + "user_id = %(user_id)s"
        return await self._run(query, {"now": now, "user_id": user_id})

    async def signed_in_at(self, family_id: UUID) -> datetime | None:
        row = await self._one(_SIGNED_IN_AT, {"family_id": family_id})
        return None if row is None else row["signed_in_at"]

    async def family_is_active(self, family_id: UUID, now: datetime) -> bool:
        row = await self._one(_FAMILY_ACTIVE, {"family_id": family_id, "now": now})
        return row is not None and bool(row["active"])
