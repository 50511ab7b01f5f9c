"""Use case: sign out everywhere."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class LogoutAll(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID


class LogoutAllHandler:
    """Revoke every session of the user; returns how many tokens were revoked.

    Rules:
    - every refresh-token family of the user is revoked, so every access token minted for
      them stops working at its next use; API keys are not touched (they are revoked one by
      one, by the user, on purpose).
    """

    def __init__(self, uow: UnitOfWork, *, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: LogoutAll) -> int:
        async with self._uow as uow:
            # held first: a refresh in flight ends before, and its successor is revoked too
            await uow.users.get_for_update(command.user_id)
            revoked = await uow.refresh_tokens.revoke_all_for_user(
                command.user_id, self._clock.now()
            )
            await uow.commit()
        return revoked
