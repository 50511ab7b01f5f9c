"""Use case: revoke one of the caller's API keys."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import ApiKeyNotFound
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class RevokeApiKey(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    key_id: UUID


class RevokeApiKeyHandler:
    """Revoke key ``key_id``; it stops authenticating at once.

    Rules:
    - only the caller's own keys: another user's key is ``ApiKeyNotFound``, exactly like a key
      that does not exist, so that key ids cannot be probed;
    - revoking a revoked key changes nothing (the first revocation time is kept);
    - once committed, the end is noted and told (``AccessChanges.ended``, as ``LogoutAll``).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        access: AccessChanges | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._access = access

    async def execute(self, command: RevokeApiKey) -> None:
        async with self._uow as uow:
            key = await uow.api_keys.get(command.key_id)
            if key.user_id != command.user_id:
                raise ApiKeyNotFound()
            # (one conditional write: of two revocations at once the first one's time stays)
            now = self._clock.now()
            if not await uow.api_keys.revoke(key.id, now):
                return
            if self._access is not None:  # refused (nothing saved) if it could not reach all
                await self._access.prepare(key.user_id)
            await uow.commit()
        if self._access is not None:
            await self._access.ended(key.user_id)
