"""Accounts (``get_for_update`` and ``lock_admins`` hold row locks), in memory."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from whalli.adapters.memory._repository import MemoryRepository, check_limit
from whalli.adapters.memory.refresh_tokens import family_is_active
from whalli.domain.model.errors import InvalidInput, UserNotFound
from whalli.domain.model.tokens import RefreshToken
from whalli.domain.model.users import Role, User, email_spellings
from whalli.ports.users import UserRepository


class CustomInstructions(msgspec.Struct, frozen=True, kw_only=True):
    """A user's custom instructions: a row of their own here, where Postgres has a column of
    ``users`` (deleted with the account either way)."""

    user_id: UUID
    text: str


def _active_admin(user: User) -> bool:
    return user.role is Role.ADMIN and not user.disabled


class InMemoryUserRepository(MemoryRepository, UserRepository):
    async def add(self, user: User) -> None:
        # a new account has no instructions, whatever the flag says (Postgres derives it)
        stored = msgspec.structs.replace(user, has_custom_instructions=False)
        self._tx().insert("users", user.id, stored)

    async def get(self, user_id: UUID) -> User:
        user: User = self._tx().get("users", user_id, UserNotFound)
        return user

    async def get_for_update(self, user_id: UUID) -> User:
        await self._tx().lock("users", user_id)  # reads the latest committed row, as Postgres
        return await self.get(user_id)

    async def get_for_delete(self, user_id: UUID) -> User:
        # (one task writes the store at a time: the row lock is all there is to hold)
        return await self.get_for_update(user_id)

    async def lock_sessions(self, user_id: UUID) -> None:
        await self.get(user_id)  # (one task writes the store at a time: nothing to wait for)

    async def find_with_session(
        self, user_id: UUID, session_id: UUID, now: datetime
    ) -> tuple[User, bool] | None:
        tx = self._tx()
        user: User | None = tx.find("users", user_id)
        return None if user is None else (user, family_is_active(tx, session_id, now))

    async def find_with_session_end(
        self, user_id: UUID, session_id: UUID
    ) -> tuple[User, datetime | None] | None:
        tx = self._tx()
        user: User | None = tx.find("users", user_id)
        if user is None:
            return None
        live: list[RefreshToken] = tx.select(
            "refresh_tokens", lambda t: t.family_id == session_id and t.revoked_at is None
        )
        return user, max((t.expires_at for t in live), default=None)

    async def find_by_email(self, email: str) -> User | None:
        spellings = email_spellings(email)
        found: list[User] = self._tx().select("users", lambda u: u.email in spellings)
        found.sort(key=lambda u: (u.email != email, u.created_at))
        return found[0] if found else None

    async def update(self, user: User) -> None:
        tx = self._tx()
        stored: User = tx.get("users", user.id, UserNotFound)
        # the flag follows the stored instructions, which only set_custom_instructions changes
        flag = stored.has_custom_instructions
        tx.replace(
            "users",
            user.id,
            msgspec.structs.replace(user, has_custom_instructions=flag),
            UserNotFound,
        )

    async def delete(self, user_id: UUID) -> None:
        # cascades as the schema does; an owned project refuses it (Conflict), as RESTRICT
        self._tx().delete("users", user_id, UserNotFound)

    async def get_custom_instructions(self, user_id: UUID) -> str | None:
        tx = self._tx()
        tx.get("users", user_id, UserNotFound)
        row: CustomInstructions | None = tx.find("user_custom_instructions", user_id)
        return None if row is None else row.text

    async def set_custom_instructions(self, user_id: UUID, text: str | None, now: datetime) -> None:
        tx = self._tx()
        user: User = tx.get("users", user_id, UserNotFound)
        user.note_custom_instructions(text is not None, now)
        tx.replace("users", user_id, user, UserNotFound)
        if text is None:
            if tx.find("user_custom_instructions", user_id) is not None:
                tx.delete("user_custom_instructions", user_id, UserNotFound)
        elif tx.find("user_custom_instructions", user_id) is None:
            tx.insert(
                "user_custom_instructions", user_id, CustomInstructions(user_id=user_id, text=text)
            )
        else:
            row = CustomInstructions(user_id=user_id, text=text)
            tx.replace("user_custom_instructions", user_id, row, UserNotFound)

    async def count_admins(self) -> int:
        return len(self._tx().select("users", _active_admin))

    async def lock_admins(self) -> None:
        tx = self._tx()
        admins: list[User] = tx.select("users", _active_admin)
        for admin in sorted(admins, key=lambda u: u.id):  # the same order as Postgres
            await tx.lock("users", admin.id)  # reads the latest committed row, as Postgres

    async def search(self, query: str = "", *, limit: int = 50, offset: int = 0) -> list[User]:
        check_limit(limit)
        if offset < 0:
            raise InvalidInput("offset must not be negative", field="offset")
        found = sorted(self._matching(query), key=lambda u: (u.created_at, u.id))
        return found[offset : offset + limit]

    async def count(self, query: str = "") -> int:
        return len(self._matching(query))

    def _matching(self, query: str) -> list[User]:
        needle = query.lower()  # as Postgres ILIKE: a case-insensitive substring
        found: list[User] = self._tx().select(
            "users", lambda u: needle in u.email.lower() or needle in u.name.lower()
        )
        return found
