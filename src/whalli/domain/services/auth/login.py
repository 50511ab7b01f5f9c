"""Use case: sign in with an email and a password."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec

from whalli.domain.model.errors import InvalidCredentials, InvalidEmail, UserNotFound
from whalli.domain.model.users import User, normalize_email
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.accounts import check_password
from whalli.domain.services.auth.sessions import TokenPair, masked_repr, open_session
from whalli.domain.services.projects.ensure_personal_project import (
    EnsurePersonalProject,
    EnsurePersonalProjectHandler,
)
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.password_hasher import PasswordHasher
from whalli.ports.token_issuer import AccessTokenIssuer
from whalli.ports.unit_of_work import UnitOfWork


class Login(msgspec.Struct, frozen=True, kw_only=True):
    email: str
    password: str

    def __repr__(self) -> str:
        return masked_repr(self, "password")


class LoginHandler:
    """Check an email and password and open a session.

    Rules:
    - an unknown (or malformed) email, an account without a password (OAuth only), a wrong
      password and a disabled account all raise the same ``InvalidCredentials``; the unknown
      and password-less cases still pay for one verification (``dummy_verify``), so neither the
      answer nor its timing tells which accounts exist;
    - hashing runs in a worker thread, outside any transaction;
    - after a successful check, a hash made with weaker parameters is replaced (re-hash);
      the account is re-read in the session's transaction, locked (shared, or for the update
      when a new hash is written back with it), so a password changed or an account disabled
      meanwhile is not overwritten nor signed in, and a change ending every session that
      commits while this one opens sees it;
    - the user's personal project is ensured (it exists for every account).
    """

    def __init__(
        self,
        uow: UnitOfWork,
        *,
        hasher: PasswordHasher,
        issuer: AccessTokenIssuer,
        clock: Clock,
        ids: IdGenerator,
        refresh_ttl: timedelta,
        access: AccessChanges | None = None,
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._issuer = issuer
        self._clock = clock
        self._ids = ids
        self._refresh_ttl = refresh_ttl
        self._access = access

    async def execute(self, command: Login) -> TokenPair:
        user = await self._check_password(command)
        new_hash = None
        if self._hasher.needs_rehash(user.password_hash or ""):
            new_hash = await asyncio.to_thread(self._hasher.hash, command.password)
        async with self._uow as uow:
            try:
                # locked when the new hash is written back with the whole account: a change
                # committed meanwhile (an admin disabling it) is read, not undone; else held
                # shared, as a refresh holds it: a password change, reset or disabling that
                # ends every session runs before (this sign-in then reads it and is refused)
                # or after (its revocation then sees this session), never across
                if new_hash is None:
                    await uow.users.lock_sessions(user.id)
                    fresh = await uow.users.get(user.id)
                else:
                    fresh = await uow.users.get_for_update(user.id)
            except UserNotFound:
                raise InvalidCredentials() from None
            if fresh.disabled or fresh.password_hash != user.password_hash:
                raise InvalidCredentials()
            if new_hash is not None:
                fresh.password_hash = new_hash
                fresh.updated_at = self._clock.now()
                await uow.users.update(fresh)
            tokens = await open_session(
                uow, fresh, issuer=self._issuer, clock=self._clock, ids=self._ids,
                refresh_ttl=self._refresh_ttl,
            )  # fmt: skip
            await uow.commit()
        if new_hash is not None and self._access is not None:
            await self._access.changed(user.id)
        await EnsurePersonalProjectHandler(self._uow, self._clock).execute(
            EnsurePersonalProject(user_id=user.id)
        )
        return tokens

    async def _check_password(self, command: Login) -> User:
        return await check_password(self._hasher, await self._find(command.email), command.password)

    async def _find(self, raw_email: str) -> User | None:
        try:
            email = normalize_email(raw_email)
        except InvalidEmail:
            return None
        async with self._uow as uow:
            return await uow.users.find_by_email(email)
