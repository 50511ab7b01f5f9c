"""Storage of provider accounts linked to users."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from whalli.domain.model.oauth import OAuthIdentity, OAuthProviderName


class OAuthIdentityRepository(Protocol):
    async def find(self, provider: OAuthProviderName, subject: str) -> OAuthIdentity | None: ...

    async def add(self, identity: OAuthIdentity) -> None:
        """Raises ``Conflict`` when that provider account is already linked."""
        ...

    async def list_for_user(self, user_id: UUID) -> list[OAuthIdentity]:
        """The user's links, oldest first."""
        ...

    async def remove(self, user_id: UUID, provider: OAuthProviderName) -> int:
        """Remove the user's links to ``provider``; how many there were."""
        ...
