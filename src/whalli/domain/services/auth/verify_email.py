"""Use case: confirm an account's address with a verification link's token."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import ApiKeyNotAllowed, EmailVerificationInvalid, UserNotFound
from whalli.domain.model.users import User
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.sessions import masked_repr
from whalli.ports.clock import Clock
from whalli.ports.email_verifications import EmailVerificationTokens
from whalli.ports.unit_of_work import UnitOfWork


class VerifyEmail(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID  # the signed-in caller
    token: str
    api_key_id: UUID | None = None  # set when the caller authenticated with an API key

    def __repr__(self) -> str:
        return masked_repr(self, "token")


class VerifyEmailHandler:
    """Mark an address verified with the token of a verification link; returns the account.

    Rules:
    - only a session may confirm: an API key is ``ApiKeyNotAllowed`` (403) before the token is
      read, as for asking (``RequestEmailVerificationHandler``);
    - the token must be one this server issued, unexpired, for the caller's own account, still
      enabled, with the address it was sent to and unchanged since (``updated_at``: a link
      sent before a disabling stays dead once the account is enabled again): else
      ``EmailVerificationInvalid`` (422, field ``token``), one answer for every case. The
      caller must be signed in as that account: whoever holds the mailbox and opens the link
      is not enough, since someone may have signed up with another's address and asked for
      the link, which its owner might open (the account, verified, would then be the one
      their OAuth sign-in joins);
    - an address verified already stays so (the same link opened twice is no error);
    - the change is told to every process once committed (``AccessChanges.changed``), as a
      change to what a principal holds.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        tokens: EmailVerificationTokens,
        clock: Clock,
        access: AccessChanges | None = None,
    ) -> None:
        self._uow, self._tokens, self._clock, self._access = uow, tokens, clock, access

    async def execute(self, command: VerifyEmail) -> User:
        if command.api_key_id is not None:
            raise ApiKeyNotAllowed("An API key cannot verify the address; sign in to do it.")
        user_id = self._tokens.user_of(command.token, self._clock.now())
        if user_id != command.user_id:
            raise EmailVerificationInvalid(field="token")
        async with self._uow as uow:
            try:
                user = await uow.users.get_for_update(user_id)
            except UserNotFound:
                raise EmailVerificationInvalid(field="token") from None
            if user.disabled or not self._tokens.issued_for(command.token, user):
                raise EmailVerificationInvalid(field="token")
            if user.email_verified:
                return user
            user.email_verified = True
            user.updated_at = self._clock.now()
            await uow.users.update(user)
            await uow.commit()
        if self._access is not None:
            await self._access.changed(user.id)
        return user
