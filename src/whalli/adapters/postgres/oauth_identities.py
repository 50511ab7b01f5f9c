"""Linked OAuth provider accounts in Postgres."""

from __future__ import annotations

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


class PostgresOAuthIdentityRepository(PostgresRepository, OAuthIdentityRepository):
    async def find(self, provider: OAuthProviderName, subject: str) -> OAuthIdentity | None:
        row = await self._one(_FIND, {"provider": provider.value, "subject": subject})
        return None if row is None else msgspec.convert(row, OAuthIdentity)

    async def add(self, identity: OAuthIdentity) -> None:
        params = msgspec.structs.asdict(identity) | {"provider": identity.provider.value}
        if await self._run(_INSERT, params) == 0:
            raise Conflict(ALREADY_LINKED)
