"""Use case: set a new password with a reset link's token (and sign in)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.errors import PasswordResetInvalid, UserNotFound
from whalli.domain.model.users import User
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.accounts import hash_new_password
from whalli.domain.services.auth.sessions import TokenPair, masked_repr, replace_password
from whalli.domain.services.auth.unproven_access import end_unproven_access
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.password_hasher import PasswordHasher
from whalli.ports.password_resets import PasswordResetTokens
from whalli.ports.password_screen import PasswordScreen
from whalli.ports.token_issuer import AccessTokenIssuer
from whalli.ports.unit_of_work import UnitOfWork


class ResetPassword(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    new_password: str

    def __repr__(self) -> str:
        return masked_repr(self, "token", "new_password")


class ResetPasswordHandler:
    """Replace a password with the token of a reset link, end every session, open a new one.

    Rules:
    - the token must be one this server issued, unexpired, for an enabled account that still
      has the address and the password it had then and has not changed since (its
      ``updated_at``: a disabling moves it, so a link sent before an admin disabled the
      account stays dead once it is enabled again): else ``PasswordResetInvalid`` (422,
      field ``token``), one answer for every case (malformed, forged, expired, used, the
      account changed, disabled or gone);
    - the new password meets the sign-up policy and screen (``hash_new_password``:
      ``InvalidPassword``), checked once the token is known good;
    - in one unit of work, the account is locked and the token checked against it again, so
      two resets with one token run one after the other and the second is refused; the new
      hash is stored, the address is marked verified (the link reached that mailbox), every
      refresh-token family is revoked (every other session ends, as at a password change)
      and a new session is opened and returned, so the caller is signed in; API keys and
      provider links stay, and so do its projects' members and shared links, unless the
      address was not verified before: then whoever set them up never proved they hold the
      mailbox (someone may have signed up with another's address first), so the reset leaves
      its owner an account nobody else still enters or sees into (pre-account hijacking, as
      ``CompleteOAuth`` refuses to link such an account; ``end_unproven_access``): the API
      keys are revoked, the provider links removed, every other member removed from the
      projects it owns and their chats' shared links revoked, and it leaves the projects it
      is a member of without owning them;
    - nothing changes unless all of it does; once committed, the end of the other sessions is
      noted and told (``AccessChanges.ended``); a store that cannot be reached refuses the
      reset first (``prepare``: 503, nothing saved).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        tokens: PasswordResetTokens,
        *,
        hasher: PasswordHasher,
        screen: PasswordScreen,
        issuer: AccessTokenIssuer,
        clock: Clock,
        ids: IdGenerator,
        refresh_ttl: timedelta,
        access: AccessChanges | None = None,
    ) -> None:
        self._uow, self._tokens, self._access = uow, tokens, access
        self._hasher, self._screen, self._issuer = hasher, screen, issuer
        self._clock, self._ids, self._refresh_ttl = clock, ids, refresh_ttl

    async def execute(self, command: ResetPassword) -> TokenPair:
        user_id = self._tokens.user_of(command.token, self._clock.now())
        async with self._uow.read_only() as uow:
            self._check(command.token, await _found(uow, user_id))
        new_hash = await hash_new_password(self._hasher, self._screen, command.new_password)
        async with self._uow as uow:
            user = self._check(command.token, await _found(uow, user_id, lock=True))
            self._tokens.user_of(command.token, self._clock.now())  # (expired meanwhile?)
            if not user.email_verified:
                await end_unproven_access(uow, user.id, self._clock.now())
            user.email_verified = True  # the link reached the mailbox
            tokens = await replace_password(
                uow, user, new_hash, issuer=self._issuer, clock=self._clock, ids=self._ids,
                refresh_ttl=self._refresh_ttl, access=self._access,
            )  # fmt: skip
        if self._access is not None:
            await self._access.ended(user.id)
        return tokens

    def _check(self, token: str, user: User | None) -> User:
        if user is None or user.disabled or not self._tokens.issued_for(token, user):
            raise PasswordResetInvalid(field="token")
        return user


async def _found(uow: UnitOfWork, user_id: UUID, *, lock: bool = False) -> User | None:
    try:
        return await (uow.users.get_for_update if lock else uow.users.get)(user_id)
    except UserNotFound:
        return None
