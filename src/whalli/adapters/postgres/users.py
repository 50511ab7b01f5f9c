"""Accounts in Postgres (``get_for_update`` and ``lock_admins`` hold row locks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import (
    ID_TAKEN,
    PostgresRepository,
    assignments,
    check_limit,
    columns,
    placeholders,
)
from whalli.domain.model.errors import (
    Conflict,
    EmailAlreadyRegistered,
    InvalidInput,
    UserNotFound,
)
from whalli.domain.model.users import User, email_spellings
from whalli.ports.users import UserRepository

COLUMNS = (
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


def user_columns(alias: str = "", prefix: str = "") -> str:
    """The select list of a ``User``: its columns (``alias.``-qualified, named ``prefix``+name)
    and the custom instructions' flag, not their text: accounts are read on every authenticated
    request, the text only by ``get_custom_instructions`` (``IS NOT NULL`` reads the row's null
    bitmap, never a long text stored out of line)."""
    qualified = f"{alias}." if alias else ""
    names = [f"{qualified}{c} AS {prefix}{c}" if prefix else f"{qualified}{c}" for c in COLUMNS]
    flag = f"{qualified}custom_instructions IS NOT NULL AS {prefix}has_custom_instructions"
    return ", ".join([*names, flag])


_SELECT = f"SELECT {user_columns()} FROM users"
# DO NOTHING keeps the transaction usable when the email is taken (an expected outcome).
_INSERT = (
    f"INSERT INTO users ({columns(COLUMNS)}) VALUES ({placeholders(COLUMNS)}) "
    "ON CONFLICT DO NOTHING"
)
# The user and its session in one statement: a request is authenticated in one round trip.
_WITH_SESSION = (
    f"SELECT {user_columns()}, EXISTS (SELECT 1 FROM refresh_tokens t "
    "WHERE t.family_id = %(session_id)s AND t.revoked_at IS NULL AND t.expires_at > %(now)s) "
    "AS session_active FROM users WHERE id = %(id)s"
)
_WITH_SESSION_END = (
    f"SELECT {user_columns()}, (SELECT max(t.expires_at) FROM refresh_tokens t "
    "WHERE t.family_id = %(session_id)s AND t.revoked_at IS NULL) "
    "AS session_until FROM users WHERE id = %(id)s"
)
# NO KEY UPDATE, as an UPDATE of the user takes: rows referring to the user stay insertable. FOR
# UPDATE would make a refresh adding its successor token wait for the holder, which may itself
# wait for that refresh's token (revoking every session): a deadlock.
_SELECT_FOR_UPDATE = f"{_SELECT} WHERE id = %(id)s FOR NO KEY UPDATE"
# FOR UPDATE, unlike the above: every insert of a row referring to the user (its foreign key
# check takes KEY SHARE) waits for the deletion, then finds the user gone.
_SELECT_FOR_DELETE = f"{_SELECT} WHERE id = %(id)s FOR UPDATE"
_UPDATE = f"UPDATE users SET {assignments(COLUMNS[1:])} WHERE id = %(id)s"
# Owned projects RESTRICT the delete: checked in the statement, so that a refusal is an answer
# (0 rows) rather than an error aborting the transaction. Everything else cascades.
_DELETE = (
    "DELETE FROM users WHERE id = %(id)s "
    "AND NOT EXISTS (SELECT 1 FROM projects WHERE owner_id = %(id)s)"
)
_SET_INSTRUCTIONS = (
    "UPDATE users SET custom_instructions = %(text)s, updated_at = %(now)s WHERE id = %(id)s"
)
# A contains-search is a sequential scan whatever the index (no pg_trgm); fine for an admin list.
_MATCHES = "(email ILIKE %(pattern)s OR name ILIKE %(pattern)s)"
_SEARCH = f"{_SELECT} WHERE {_MATCHES} ORDER BY created_at, id LIMIT %(limit)s OFFSET %(offset)s"
_COUNT = f"SELECT count(*) AS n FROM users WHERE {_MATCHES}"
_ACTIVE_ADMIN = "role = 'admin' AND NOT disabled"
# In id order, so two lockers never wait for each other crosswise. Under READ COMMITTED a row
# changed by the holder is checked again once it commits (a demoted admin is not locked).
# NO KEY UPDATE, as an UPDATE of these columns takes: rows referring to the user stay insertable.
_LOCK_ADMINS = f"SELECT id FROM users WHERE {_ACTIVE_ADMIN} ORDER BY id FOR NO KEY UPDATE"


def _params(user: User) -> dict[str, Any]:
    return msgspec.structs.asdict(user)


def _pattern(query: str) -> str:
    """``query`` as a literal ILIKE substring pattern (its wildcards escaped)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PostgresUserRepository(PostgresRepository, UserRepository):
    async def add(self, user: User) -> None:
        if await self._run(_INSERT, _params(user)) == 0:
            if await self.find_by_email(user.email) is not None:
                raise EmailAlreadyRegistered()
            raise Conflict(ID_TAKEN)

    async def get(self, user_id: UUID) -> User:
        return await self._get(f"{_SELECT} WHERE id = %(id)s", user_id)

    async def get_for_update(self, user_id: UUID) -> User:
        return await self._get(_SELECT_FOR_UPDATE, user_id)

    async def get_for_delete(self, user_id: UUID) -> User:
        return await self._get(_SELECT_FOR_DELETE, user_id)

    async def lock_sessions(self, user_id: UUID) -> None:
        # FOR SHARE conflicts with get_for_update's FOR NO KEY UPDATE, not with itself
        if (
            await self._one("SELECT 1 FROM users WHERE id = %(id)s FOR SHARE", {"id": user_id})
            is None
        ):
            raise UserNotFound()

    async def _get(self, query: LiteralString, user_id: UUID) -> User:
        row = await self._one(query, {"id": user_id})
        if row is None:
            raise UserNotFound()
        return msgspec.convert(row, User)

    async def find_with_session(
        self, user_id: UUID, session_id: UUID, now: datetime
    ) -> tuple[User, bool] | None:
        params = {"id": user_id, "session_id": session_id, "now": now}
        row = await self._one(_WITH_SESSION, params)
        if row is None:
            return None
        active = bool(row.pop("session_active"))
        return msgspec.convert(row, User), active

    async def find_with_session_end(
        self, user_id: UUID, session_id: UUID
    ) -> tuple[User, datetime | None] | None:
        row = await self._one(_WITH_SESSION_END, {"id": user_id, "session_id": session_id})
        if row is None:
            return None
        until: datetime | None = row.pop("session_until")
        return msgspec.convert(row, User), until

    async def find_by_email(self, email: str) -> User | None:
        spellings = list(email_spellings(email))
        if len(spellings) == 1:
            row = await self._one(f"{_SELECT} WHERE email = %(email)s", {"email": email})
        else:  # the normalized spelling first, then one stored before domains were decoded
            row = await self._one(
                f"{_SELECT} WHERE email = ANY(%(emails)s)"
                " ORDER BY email = %(email)s DESC, created_at LIMIT 1",
                {"email": email, "emails": spellings},
            )
        return None if row is None else msgspec.convert(row, User)

    async def update(self, user: User) -> None:
        if await self._run(_UPDATE, _params(user)) == 0:
            raise UserNotFound()

    async def delete(self, user_id: UUID) -> None:
        if await self._run(_DELETE, {"id": user_id}) == 0:
            await self.get(user_id)  # UserNotFound, else it still owns projects
            raise Conflict("The account still owns projects; delete them first.")

    async def get_custom_instructions(self, user_id: UUID) -> str | None:
        row = await self._one(
            "SELECT custom_instructions FROM users WHERE id = %(id)s", {"id": user_id}
        )
        if row is None:
            raise UserNotFound()
        text: str | None = row["custom_instructions"]
        return text

    async def set_custom_instructions(self, user_id: UUID, text: str | None, now: datetime) -> None:
        params = {"id": user_id, "text": text, "now": now}
        if await self._run(_SET_INSTRUCTIONS, params) == 0:
            raise UserNotFound()

    async def count_admins(self) -> int:
        row = await self._one(f"SELECT count(*) AS n FROM users WHERE {_ACTIVE_ADMIN}", {})
        return 0 if row is None else int(row["n"])

    async def lock_admins(self) -> None:
        await self._all(_LOCK_ADMINS, {})

    async def search(self, query: str = "", *, limit: int = 50, offset: int = 0) -> list[User]:
        check_limit(limit)
        if offset < 0:
            raise InvalidInput("offset must not be negative", field="offset")
        params = {"pattern": _pattern(query), "limit": limit, "offset": offset}
        return [msgspec.convert(r, User) for r in await self._all(_SEARCH, params)]

    async def count(self, query: str = "") -> int:
        row = await self._one(_COUNT, {"pattern": _pattern(query)})
        return 0 if row is None else int(row["n"])
