"""Accounts, in memory."""

from __future__ import annotations

from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.errors import UserNotFound
from whalli.domain.model.users import Role, User
from whalli.ports.users import UserRepository


class InMemoryUserRepository(MemoryRepository, UserRepository):
    async def add(self, user: User) -> None:
        self._tx().insert("users", user.id, user)

    async def get(self, user_id: UUID) -> User:
        user: User = self._tx().get("users", user_id, UserNotFound)
        return user

    async def find_by_email(self, email: str) -> User | None:
        found: list[User] = self._tx().select("users", lambda u: u.email == email)
        return found[0] if found else None

    async def update(self, user: User) -> None:
        self._tx().replace("users", user.id, user, UserNotFound)

    async def count_admins(self) -> int:
        return len(self._tx().select("users", lambda u: u.role is Role.ADMIN and not u.disabled))
