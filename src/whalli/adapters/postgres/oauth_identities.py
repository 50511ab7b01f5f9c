"""Linked OAuth provider accounts in Postgres."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import PostgresRepository, columns, placeholders
from whalli.domain.model.errors import Conflict
from whalli.domain.model.oauth import OAuthIdentity, OAuthProviderName
from whalli.ports.oauth_identities import OAuthIdentityRepository

ALREADY_LINKED = "This provider account is already linked."

_COLUMNS = ("provider", "subject", "user_id", "email", "created_at")
# DO NOTHING keeps the transaction usable: two first sign-ins racing is an expected outcome.
_INSERT = (
    f"INSERT INTO oauth_identities ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)}) "
    "ON CONFLICT (provider, subject) DO NOTHING"
)
_FIND = (
    f"SELECT {columns(_COLUMNS)} FROM oauth_identities "
    "WHERE provider = %(provider)s AND subject = %(subject)s"
)


_LIST = (
    f"SELECT {columns(_COLUMNS)} FROM oauth_identities WHERE user_id = %(user_id)s "
    "ORDER BY created_at, provider, subject"
)
_REMOVE = "DELETE FROM oauth_identities WHERE user_id = %(user_id)s AND provider = %(provider)s"


class PostgresOAuthIdentityRepository(PostgresRepository, OAuthIdentityRepository):
    async def find(self, provider: OAuthProviderName, subject: str) -> OAuthIdentity | None:
        row = await self._one(_FIND, {"provider": provider.value, "subject": subject})
        return None if row is None else msgspec.convert(row, OAuthIdentity)

    async def add(self, identity: OAuthIdentity) -> None:
        params = msgspec.structs.asdict(identity) | {"provider": identity.provider.value}
        if await self._run(_INSERT, params) == 0:
            raise Conflict(ALREADY_LINKED)

    async def list_for_user(self, user_id: UUID) -> list[OAuthIdentity]:
        rows = await self._all(_LIST, {"user_id": user_id})
        return [msgspec.convert(row, OAuthIdentity) for row in rows]

    async def remove(self, user_id: UUID, provider: OAuthProviderName) -> int:
        return await self._run(_REMOVE, {"user_id": user_id, "provider": provider.value})
