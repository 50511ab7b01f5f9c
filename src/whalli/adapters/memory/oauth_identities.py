"""Linked OAuth provider accounts, in memory."""

from __future__ import annotations

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.errors import Conflict
from whalli.domain.model.oauth import OAuthIdentity, OAuthProviderName
from whalli.ports.oauth_identities import OAuthIdentityRepository

ALREADY_LINKED = "This provider account is already linked."


class InMemoryOAuthIdentityRepository(MemoryRepository, OAuthIdentityRepository):
    async def find(self, provider: OAuthProviderName, subject: str) -> OAuthIdentity | None:
        found: OAuthIdentity | None = self._tx().find("oauth_identities", (provider, subject))
        return found

    async def add(self, identity: OAuthIdentity) -> None:
        key = (identity.provider, identity.subject)
        if key in self._tx().table("oauth_identities"):
            raise Conflict(ALREADY_LINKED)
        self._tx().insert("oauth_identities", key, identity)
