"""Use case: read one's own profile (the account and its custom instructions)."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.users import User
from whalli.ports.unit_of_work import UnitOfWork


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    user: User
    # the system prompt a new chat of the user's gets when its start gives none
    custom_instructions: str | None = None


class GetProfile(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    # The caller as authentication read it for this request (fresh); saves reading it again.
    user: User | None = None


class GetProfileHandler:
    """The caller's account, with the text of their custom instructions.

    Rules:
    - the custom instructions are read only when the account says there are some
      (``has_custom_instructions``): a caller without any costs no query beyond authentication;
    - an unknown account: ``UserNotFound``.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: GetProfile) -> Profile:
        user = command.user
        if user is not None and user.id == command.user_id and not user.has_custom_instructions:
            return Profile(user=user)
        async with self._uow.read_only() as uow:
            if user is None or user.id != command.user_id:
                user = await uow.users.get(command.user_id)
            if not user.has_custom_instructions:
                return Profile(user=user)
            text = await uow.users.get_custom_instructions(user.id)
        return Profile(user=user, custom_instructions=text)
