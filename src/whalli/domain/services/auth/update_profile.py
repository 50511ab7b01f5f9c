"""Use case: change one's own profile (the display name, the custom instructions)."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.users import clean_custom_instructions
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.get_profile import Profile
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class UpdateProfile(msgspec.Struct, frozen=True, kw_only=True):
    """``None`` leaves a field as it is; blank custom instructions clear them."""

    user_id: UUID
    name: str | None = None
    custom_instructions: str | None = None


class UpdateProfileHandler:
    """Apply the caller's change to their own account and return the account.

    Rules:
    - the name follows the sign-up rules (``clean_user_name``): trimmed, cut to 200 characters,
      and it may be empty;
    - the custom instructions follow a chat's system prompt's rules
      (``clean_custom_instructions``): trimmed, at most 20,000 characters (else
      ``InvalidInput``, nothing changed), blank clears them; they are copied into each chat
      started afterwards without a system prompt, so a change here changes no existing chat;
    - an unknown account: ``UserNotFound``;
    - a change that changes nothing is not written;
    - the account is locked for the change, so a change of it committed meanwhile (disabled
      by an admin, a new password) is kept, not written back as it was read.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock, access: AccessChanges | None = None) -> None:
        self._uow = uow
        self._clock = clock
        self._access = access

    async def execute(self, command: UpdateProfile) -> Profile:
        wanted = command.custom_instructions
        instructions = None if wanted is None else clean_custom_instructions(wanted)
        now = self._clock.now()
        async with self._uow as uow:
            # locked: the name is written back with the whole account, which must not undo a
            # change committed meanwhile (an admin disabling it, a new password)
            user = await uow.users.get_for_update(command.user_id)
            current = None
            if user.has_custom_instructions:
                current = await uow.users.get_custom_instructions(user.id)
            changed = False
            if wanted is not None and instructions != current:
                await uow.users.set_custom_instructions(user.id, instructions, now)
                user.note_custom_instructions(instructions is not None, now)
                current, changed = instructions, True
            if command.name is not None and user.rename(command.name, now):
                await uow.users.update(user)
                changed = True
            if changed:
                await uow.commit()
        if changed and self._access is not None:
            await self._access.changed(user.id)
        return Profile(user=user, custom_instructions=current)
