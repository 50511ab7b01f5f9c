"""Accounts in Postgres."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import (
    ID_TAKEN,
    PostgresRepository,
    assignments,
    columns,
    placeholders,
)
from whalli.domain.model.errors import Conflict, EmailAlreadyRegistered, UserNotFound
from whalli.domain.model.users import User
from whalli.ports.users import UserRepository

_COLUMNS = (
    "id",
    "email",
    "name",
    "password_hash",
    "role",
    "plan",
    "disabled",
    "email_verified",
    "created_at",
    "updated_at",
)
_SELECT = f"SELECT {columns(_COLUMNS)} FROM users"
# DO NOTHING keeps the transaction usable when the email is taken (an expected outcome).
_INSERT = (
    f"INSERT INTO users ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)}) "
    "ON CONFLICT DO NOTHING"
)
_UPDATE = f"UPDATE users SET {assignments(_COLUMNS[1:])} WHERE id = %(id)s"


def _params(user: User) -> dict[str, Any]:
    return msgspec.structs.asdict(user)


class PostgresUserRepository(PostgresRepository, UserRepository):
    async def add(self, user: User) -> None:
        if await self._run(_INSERT, _params(user)) == 0:
            if await self.find_by_email(user.email) is not None:
                raise EmailAlreadyRegistered()
            raise Conflict(ID_TAKEN)

    async def get(self, user_id: UUID) -> User:
        row = await self._one(f"{_SELECT} WHERE id = %(id)s", {"id": user_id})
        if row is None:
            raise UserNotFound()
        return msgspec.convert(row, User)

    async def find_by_email(self, email: str) -> User | None:
        row = await self._one(f"{_SELECT} WHERE email = %(email)s", {"email": email})
        return None if row is None else msgspec.convert(row, User)

    async def update(self, user: User) -> None:
        if await self._run(_UPDATE, _params(user)) == 0:
            raise UserNotFound()

    async def count_admins(self) -> int:
        """Accounts that can act as admins: role admin and not disabled."""
        row = await self._one(
            "SELECT count(*) AS n FROM users WHERE role = 'admin' AND NOT disabled", {}
        )
        return 0 if row is None else int(row["n"])
