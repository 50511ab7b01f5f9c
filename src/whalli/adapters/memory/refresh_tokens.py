"""Refresh tokens (``find_by_hash_for_update`` holds a row lock), in memory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.adapters.memory.store import MemoryTransaction
from whalli.domain.model.errors import NotFound
from whalli.domain.model.tokens import RefreshToken
from whalli.ports.refresh_tokens import RefreshTokenRepository

NOT_FOUND_MESSAGE = "Refresh token not found."


class _TokenNotFound(NotFound):
    default_message = NOT_FOUND_MESSAGE


def family_is_active(tx: MemoryTransaction, family_id: UUID, now: datetime) -> bool:
    return bool(
        tx.select(
            "refresh_tokens",
            lambda t: t.family_id == family_id and t.revoked_at is None and now < t.expires_at,
        )
    )


class InMemoryRefreshTokenRepository(MemoryRepository, RefreshTokenRepository):
    async def add(self, token: RefreshToken) -> None:
        self._tx().insert("refresh_tokens", token.id, token)

    async def owner_of(self, token_hash: str) -> UUID | None:
        found: list[RefreshToken] = self._tx().select(
            "refresh_tokens", lambda t: t.token_hash == token_hash
        )
        return found[0].user_id if found else None

    async def find_by_hash_for_update(self, token_hash: str) -> RefreshToken | None:
        tx = self._tx()
        found: list[RefreshToken] = tx.select(
            "refresh_tokens", lambda t: t.token_hash == token_hash
        )
        if not found:
            return None
        # Locking re-reads the latest committed row, as SELECT ... FOR UPDATE does after a wait.
        await tx.lock("refresh_tokens", found[0].id)
        token: RefreshToken | None = tx.find("refresh_tokens", found[0].id)
        return token

    async def update(self, token: RefreshToken) -> None:
        tx = self._tx()
        stored: RefreshToken = tx.get("refresh_tokens", token.id, _TokenNotFound)
        stored.used_at, stored.revoked_at = token.used_at, token.revoked_at
        tx.replace("refresh_tokens", token.id, stored, _TokenNotFound)

    async def revoke_family(self, family_id: UUID, now: datetime) -> int:
        return self._revoke(lambda t: t.family_id == family_id, now)

    async def revoke_all_for_user(self, user_id: UUID, now: datetime) -> int:
        return self._revoke(lambda t: t.user_id == user_id, now)

    async def signed_in_at(self, family_id: UUID) -> datetime | None:
        tokens: list[RefreshToken] = self._tx().select(
            "refresh_tokens", lambda t: t.family_id == family_id
        )
        return min((t.created_at for t in tokens), default=None)

    async def family_is_active(self, family_id: UUID, now: datetime) -> bool:
        return family_is_active(self._tx(), family_id, now)

    def _revoke(self, where: Callable[[RefreshToken], bool], now: datetime) -> int:
        tx = self._tx()
        doomed: list[RefreshToken] = tx.select(
            "refresh_tokens", lambda t: t.revoked_at is None and where(t)
        )
        for token in doomed:
            token.revoked_at = now
            tx.replace("refresh_tokens", token.id, token, _TokenNotFound)
        return len(doomed)
