"""Use case: change one's own profile (the display name)."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.users import User
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class UpdateProfile(msgspec.Struct, frozen=True, kw_only=True):
    """``None`` leaves a field as it is."""

    user_id: UUID
    name: str | None = None


class UpdateProfileHandler:
    """Apply the caller's change to their own account and return the account.

    Rules:
    - the name follows the sign-up rules (``clean_user_name``): trimmed, cut to 200 characters,
      and it may be empty;
    - an unknown account: ``UserNotFound``;
    - a change that changes nothing is not written.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: UpdateProfile) -> User:
        async with self._uow as uow:
            user = await uow.users.get(command.user_id)
            if command.name is None or not user.rename(command.name, self._clock.now()):
                return user
            await uow.users.update(user)
            await uow.commit()
        return user
