"""Linked OAuth provider accounts, in memory."""

from __future__ import annotations

from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.errors import Conflict, NotFound
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

    async def list_for_user(self, user_id: UUID) -> list[OAuthIdentity]:
        found: list[OAuthIdentity] = self._tx().select(
            "oauth_identities", lambda link: link.user_id == user_id
        )
        return sorted(found, key=lambda link: (link.created_at, link.provider, link.subject))

    async def remove(self, user_id: UUID, provider: OAuthProviderName) -> int:
        tx = self._tx()
        links = await self.list_for_user(user_id)
        gone = [link for link in links if link.provider is provider]
        for link in gone:
            tx.delete("oauth_identities", (link.provider, link.subject), NotFound)
        return len(gone)
