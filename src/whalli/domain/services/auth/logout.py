"""Use case: sign out of one session."""

from __future__ import annotations

import msgspec

from whalli.domain.model.errors import UserNotFound
from whalli.domain.model.tokens import hash_refresh_secret
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.refresh_session import MAX_REFRESH_TOKEN_LENGTH
from whalli.domain.services.auth.sessions import masked_repr
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class Logout(msgspec.Struct, frozen=True, kw_only=True):
    refresh_token: str

    def __repr__(self) -> str:
        return masked_repr(self, "refresh_token")


class LogoutHandler:
    """Revoke the session (refresh-token family) the token belongs to.

    Rules:
    - any token of the family will do, spent ones included, and the whole family is revoked,
      so the access tokens minted for it stop working at their next use (``Authenticate``
      checks that the family is active);
    - idempotent and silent: an unknown, revoked or expired token is not an error, so the
      answer does not tell whether a token was ever valid;
    - the account is held (exclusively) before the token, in the order a refresh takes them:
      a refresh in flight (a second tab's, within the reuse grace window, adding a sibling
      token) ends first and its new token is revoked with the family, or it comes after and
      finds the family revoked. Nothing of the session is left live after the answer;
    - once committed, the end is noted in this process's ``CredentialEnds``, at the clock's
      time after the commit, and told to every process (``AccessChanges.ended``, as
      ``LogoutAll``).
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

    async def execute(self, command: Logout) -> None:
        secret = command.refresh_token
        if not secret or len(secret) > MAX_REFRESH_TOKEN_LENGTH:
            return
        token_hash = hash_refresh_secret(secret)
        async with self._uow as uow:
            owner = await uow.refresh_tokens.owner_of(token_hash)
            if owner is None:
                return
            try:
                await uow.users.get_for_update(owner)
            except UserNotFound:
                return  # the account is gone, and its sessions with it
            token = await uow.refresh_tokens.find_by_hash_for_update(token_hash)
            if token is None:
                return
            now = self._clock.now()
            await uow.refresh_tokens.revoke_family(token.family_id, now)
            if self._access is not None:  # refused (nothing saved) if it could not reach all
                await self._access.prepare(owner)
            await uow.commit()
        if self._access is not None:
            await self._access.ended(owner)
