"""Use case: sign out everywhere."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class LogoutAll(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID


class LogoutAllHandler:
    """Revoke every session of the user; returns how many tokens were revoked.

    Rules:
    - every refresh-token family of the user is revoked, so every access token minted for
      them stops working at its next use; API keys are not touched (they are revoked one by
      one, by the user, on purpose);
    - once committed, the end is noted in this process's ``CredentialEnds`` at the clock's
      time after the commit, not the revocation's, and told to every process
      (``AccessChanges.ended``): a start that authenticated while the end waited to commit
      (the credential still in force) read the user after the revocation's time but before
      the commit, and must be seen as read before the end.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        clock: Clock,
        access: AccessChanges | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._access = access

    async def execute(self, command: LogoutAll) -> int:
        async with self._uow as uow:
            # held first: a refresh in flight ends before, and its successor is revoked too
            await uow.users.get_for_update(command.user_id)
            now = self._clock.now()
            revoked = await uow.refresh_tokens.revoke_all_for_user(command.user_id, now)
            if self._access is not None:  # refused (nothing saved) if it could not reach all
                await self._access.prepare(command.user_id)
            await uow.commit()
        if self._access is not None:
            await self._access.ended(command.user_id)
        return revoked
