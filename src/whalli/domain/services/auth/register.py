"""Use case: sign up with an email and a password."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from whalli.domain.model.users import Plan, Role, User, normalize_email
from whalli.domain.services.auth.accounts import add_account, hash_new_password
from whalli.domain.services.auth.sessions import TokenPair, masked_repr, open_session
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.password_hasher import PasswordHasher
from whalli.ports.password_screen import PasswordScreen
from whalli.ports.token_issuer import AccessTokenIssuer
from whalli.ports.unit_of_work import UnitOfWork


class Register(msgspec.Struct, frozen=True, kw_only=True):
    email: str
    password: str
    name: str = ""

    def __repr__(self) -> str:
        return masked_repr(self, "password")


class RegisterHandler:
    """Create an account and sign it in.

    Rules:
    - the email is normalized (``InvalidEmail``); the password must meet the policy
      (``InvalidPassword``), both checked before any hashing: its length first, then the
      password screen, which refuses the most common passwords (rule ``common``) and, when a
      breach service is configured, breached ones (rule ``breached``); the error never
      contains the password, and a breach service that fails does not block sign-up;
    - the password is hashed off the event loop, before the transaction opens;
    - a new account is always a ``user`` on the ``free`` plan: sign-up never grants admin
      (admins are made with ``whalli users create --admin``);
    - the user, their personal project and the first session are created in one unit of
      work; a taken email is ``EmailAlreadyRegistered`` (409) and leaves nothing behind.
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
    ) -> None:
        self._uow = uow
        self._hasher = hasher
        self._screen = screen
        self._issuer = issuer
        self._clock = clock
        self._ids = ids
        self._refresh_ttl = refresh_ttl

    async def execute(self, command: Register) -> tuple[User, TokenPair]:
        email = normalize_email(command.email)
        password_hash = await hash_new_password(self._hasher, self._screen, command.password)
        user = User.create(
            id=self._ids.new_id(),
            email=email,
            name=command.name,
            password_hash=password_hash,
            role=Role.USER,
            plan=Plan.FREE,
            now=self._clock.now(),
        )
        async with self._uow as uow:
            await add_account(uow, user)
            tokens = await open_session(
                uow, user, issuer=self._issuer, clock=self._clock, ids=self._ids,
                refresh_ttl=self._refresh_ttl,
            )  # fmt: skip
            await uow.commit()
        return user, tokens
