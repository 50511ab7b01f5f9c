"""Storage of refresh tokens (rotating, in families; only hashes are stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.tokens import RefreshToken


class RefreshTokenRepository(Protocol):
    async def add(self, token: RefreshToken) -> None: ...

    async def owner_of(self, token_hash: str) -> UUID | None:
        """The user of the token with this hash (no lock), or ``None``."""
        ...

    async def find_by_hash_for_update(self, token_hash: str) -> RefreshToken | None:
        """The token with this hash, locked until the unit of work ends (two concurrent
        refreshes of one token are serialized: the second sees it spent)."""
        ...

    async def update(self, token: RefreshToken) -> None:
        """Persist ``used_at``/``revoked_at``."""
        ...

    async def revoke_family(self, family_id: UUID, now: datetime) -> int:
        """Revoke every token of the family that is not revoked yet; return how many."""
        ...

    async def revoke_all_for_user(self, user_id: UUID, now: datetime) -> int:
        """Revoke every family of the user (logout everywhere, disabled account)."""
        ...

    async def signed_in_at(self, family_id: UUID) -> datetime | None:
        """When the session (refresh-token family) began: its first token's creation, the
        sign-in itself; ``None`` for an unknown family."""
        ...

    async def family_is_active(self, family_id: UUID, now: datetime) -> bool:
        """True while the family has a token that is neither revoked nor past its expiry."""
        ...
