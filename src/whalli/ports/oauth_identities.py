"""Storage of provider accounts linked to users."""

from __future__ import annotations

from typing import Protocol

from whalli.domain.model.oauth import OAuthIdentity, OAuthProviderName


class OAuthIdentityRepository(Protocol):
    async def find(self, provider: OAuthProviderName, subject: str) -> OAuthIdentity | None: ...

    async def add(self, identity: OAuthIdentity) -> None:
        """Raises ``Conflict`` when that provider account is already linked."""
        ...
