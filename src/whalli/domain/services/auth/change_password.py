"""Use case: change one's own password (and sign out everywhere else)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.errors import (
    ApiKeyNotAllowed,
    InvalidCredentials,
    InvalidPassword,
    UserNotFound,
)
from whalli.domain.model.passwords import normalize_password
from whalli.domain.model.users import User
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.accounts import check_password, hash_new_password
from whalli.domain.services.auth.sessions import TokenPair, masked_repr, replace_password
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.password_hasher import PasswordHasher
from whalli.ports.password_screen import PasswordScreen
from whalli.ports.token_issuer import AccessTokenIssuer
from whalli.ports.unit_of_work import UnitOfWork


class ChangePassword(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    current_password: str
    new_password: str
    api_key_id: UUID | None = None  # set when the caller authenticated with an API key

    def __repr__(self) -> str:
        return masked_repr(self, "current_password", "new_password")


class ChangePasswordHandler:
    """Replace the caller's password, end every session and open a fresh one for the caller.

    Rules:
    - only a session may do it: a caller authenticated by an API key gets
      ``ApiKeyNotAllowed`` (403), since a leaked key must not be able to take the account over,
      before anything else (``refuse_api_key``: nor counted against the login limits);
    - the current password is checked as at login, off the event loop: a wrong one, an account
      without a password (OAuth only; it still pays for one ``dummy_verify``) and a disabled or
      deleted account all raise the same ``InvalidCredentials``; the entrypoint counts the
      attempt against the login limits of that account first, so a stolen access token cannot
      guess the password faster than a login could;
    - a new password equal to the current one (after NFC) is ``InvalidPassword`` with rule
      ``unchanged``; otherwise it meets the sign-up policy and screen (``hash_new_password``:
      ``InvalidPassword`` with rule ``min_length``, ``max_length``, ``common`` or ``breached``);
      both are checked only once the current password is known to be right;
    - in one unit of work: the account is re-read and locked, and refused
      (``InvalidCredentials``) if it was disabled or its password changed since the check; the
      lock makes two concurrent changes run one after the other, so the second sees the
      first's new hash and is refused rather than overwriting it; the new hash is stored; every
      refresh-token family of the user is revoked, so every other session and every access
      token minted for one stops working at its next use; a new session is opened and its pair
      returned, so the caller stays signed in; API keys are not touched (as ``LogoutAll``);
    - nothing changes unless all of it does; once committed, the end of the other sessions is
      noted and told (``AccessChanges.ended``, as ``LogoutAll``).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        hasher: PasswordHasher,
        screen: PasswordScreen,
        issuer: AccessTokenIssuer,
        clock: Clock,
        ids: IdGenerator,
        refresh_ttl: timedelta,
        access: AccessChanges | None = None,
    ) -> None:
        self._uow = uow
        self._access = access
        self._hasher = hasher
        self._screen = screen
        self._issuer = issuer
        self._clock = clock
        self._ids = ids
        self._refresh_ttl = refresh_ttl

    @staticmethod
    def refuse_api_key(command: ChangePassword) -> None:
        """``ApiKeyNotAllowed`` when an API key asks: the entrypoint asks it before it counts
        the attempt against the login limit (a key's attempt spends no password attempt)."""
        if command.api_key_id is not None:
            raise ApiKeyNotAllowed("An API key cannot change the password; sign in to do it.")

    async def execute(self, command: ChangePassword) -> TokenPair:
        self.refuse_api_key(command)
        user = await self._check_current(command)
        if normalize_password(command.new_password) == normalize_password(command.current_password):
            raise InvalidPassword(
                "The new password must differ from the current one.", rule="unchanged"
            )
        new_hash = await hash_new_password(self._hasher, self._screen, command.new_password)
        async with self._uow as uow:
            try:
                fresh = await uow.users.get_for_update(user.id)
            except UserNotFound:
                raise InvalidCredentials() from None
            if fresh.disabled or fresh.password_hash != user.password_hash:
                raise InvalidCredentials()
            tokens = await replace_password(
                uow, fresh, new_hash, issuer=self._issuer, clock=self._clock, ids=self._ids,
                refresh_ttl=self._refresh_ttl, access=self._access,
            )  # fmt: skip
        if self._access is not None:
            await self._access.ended(fresh.id)
        return tokens

    async def _check_current(self, command: ChangePassword) -> User:
        async with self._uow as uow:
            try:
                user: User | None = await uow.users.get(command.user_id)
            except UserNotFound:
                user = None
        return await check_password(self._hasher, user, command.current_password)
