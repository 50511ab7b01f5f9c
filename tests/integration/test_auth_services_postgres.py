"""Account and session use cases on the real Postgres unit of work (and the in-memory one)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.password_hasher import FastPasswordHasher
from whalli.adapters.passwords.common_list import CommonPasswordList
from whalli.adapters.system.ids import UuidGenerator
from whalli.domain.model.api_keys import API_KEY_PREFIX, ApiKey
from whalli.domain.model.errors import (
    EmailAlreadyRegistered,
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
)
from whalli.domain.model.principal import Principal
from whalli.domain.model.users import Plan, Role, User
from whalli.domain.services.auth.authenticate import Authenticate, AuthenticateHandler
from whalli.domain.services.auth.login import Login, LoginHandler
from whalli.domain.services.auth.logout import Logout, LogoutHandler
from whalli.domain.services.auth.refresh_session import RefreshSession, RefreshSessionHandler
from whalli.domain.services.auth.register import Register, RegisterHandler
from whalli.domain.services.auth.sessions import TokenPair

from .conftest import UowFactory

PASSWORD = "correct horse battery"
INVALID = "The token is invalid or has expired."


class Auth:
    def __init__(self, uow_factory: UowFactory) -> None:
        self.uow = uow_factory
        self.clock = ManualClock()
        self.ids = UuidGenerator()
        self.hasher = FastPasswordHasher()
        self.issuer = JwtAccessTokenIssuer(
            secret="s" * 32, issuer="whalli", audience="whalli-api", clock=self.clock
        )
        self.ports = {"issuer": self.issuer, "clock": self.clock, "ids": self.ids}

    async def register(self, email: str) -> tuple[User, TokenPair]:
        handler = RegisterHandler(
            self.uow(), hasher=self.hasher, screen=CommonPasswordList(),
            refresh_ttl=timedelta(days=1), **self.ports,
        )  # fmt: skip
        return await handler.execute(Register(email=email, password=PASSWORD))

    async def login(self, email: str, password: str = PASSWORD) -> TokenPair:
        handler = LoginHandler(
            self.uow(), hasher=self.hasher, refresh_ttl=timedelta(days=1), **self.ports
        )
        return await handler.execute(Login(email=email, password=password))

    async def refresh(self, token: str) -> TokenPair:
        handler = RefreshSessionHandler(self.uow(), **self.ports)
        return await handler.execute(RefreshSession(refresh_token=token))

    async def logout(self, token: str) -> None:
        await LogoutHandler(self.uow(), clock=self.clock).execute(Logout(refresh_token=token))

    async def save(self, user: User) -> None:
        async with self.uow() as uow:
            await uow.users.update(user)
            await uow.commit()

    async def authenticate(self, token: str) -> Principal:
        handler = AuthenticateHandler(self.uow(), issuer=self.issuer, clock=self.clock)
        return await handler.execute(Authenticate(credential=token))


@pytest.fixture
def auth(uow_factory: UowFactory) -> Auth:
    return Auth(uow_factory)


async def test_sign_up_and_sign_in_on_the_real_database(auth: Auth, unique: str) -> None:
    email = f"ada-{unique}@example.com"
    user, _ = await auth.register(email)

    with pytest.raises(EmailAlreadyRegistered, match="already exists"):
        await auth.register(email.upper())
    with pytest.raises(InvalidCredentials, match="not correct"):
        await auth.login(email, "not the password")
    tokens = await auth.login(email)

    principal = await auth.authenticate(tokens.access_token)
    assert (principal.user_id, principal.user.role) == (user.id, Role.USER)
    async with auth.uow() as uow:
        [project] = await uow.projects.list_for_user(user.id)
    assert project.personal


async def test_concurrent_refreshes_of_one_token_let_one_through_and_revoke_the_family(
    auth: Auth, unique: str
) -> None:
    _, tokens = await auth.register(f"race-{unique}@example.com")

    results = await asyncio.gather(
        auth.refresh(tokens.refresh_token), auth.refresh(tokens.refresh_token),
        return_exceptions=True,
    )  # fmt: skip

    assert sorted(type(r).__name__ for r in results) == ["RefreshTokenReused", "TokenPair"]
    [winner] = [r for r in results if isinstance(r, TokenPair)]
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.refresh(winner.refresh_token)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(winner.access_token)


async def test_reuse_after_rotation_and_logout_end_the_session(auth: Auth, unique: str) -> None:
    _, first = await auth.register(f"reuse-{unique}@example.com")
    second = await auth.refresh(first.refresh_token)

    with pytest.raises(RefreshTokenReused, match=INVALID):
        await auth.refresh(first.refresh_token)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(second.access_token)

    other = await auth.login(f"reuse-{unique}@example.com")
    await auth.logout(other.refresh_token)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(other.access_token)


async def test_an_access_token_reads_role_plan_and_disabled_state_fresh(
    auth: Auth, unique: str
) -> None:
    user, tokens = await auth.register(f"fresh-{unique}@example.com")
    assert (await auth.authenticate(tokens.access_token)).user == user

    user.role, user.plan = Role.ADMIN, Plan.PRO
    await auth.save(user)
    principal = await auth.authenticate(tokens.access_token)
    assert (principal.user.role, principal.user.plan, principal.session_id) == (
        Role.ADMIN,
        Plan.PRO,
        auth.issuer.verify(tokens.access_token).session_id,
    )

    user.disabled = True
    await auth.save(user)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(tokens.access_token)


async def test_an_api_key_authenticates_only_while_active_and_its_user_enabled(
    auth: Auth, unique: str
) -> None:
    user, _ = await auth.register(f"keys-{unique}@example.com")
    now = auth.clock.now()

    def a_key(name: str, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
        secret = f"{API_KEY_PREFIX}{name}-{unique}-{'k' * 43}"
        key = ApiKey.create(
            id=auth.ids.new_id(), user_id=user.id, name=name, secret=secret, now=now,
            expires_at=expires_at,
        )  # fmt: skip
        return key, secret

    (active, active_secret), (revoked, revoked_secret) = a_key("active"), a_key("revoked")
    expiring, expiring_secret = a_key("expiring", now + timedelta(minutes=1))
    revoked.revoke(now)
    async with auth.uow() as uow:
        for key in (active, revoked, expiring):
            await uow.api_keys.add(key)
        await uow.commit()

    principal = await auth.authenticate(active_secret)
    assert (principal.user, principal.api_key_id, principal.session_id) == (user, active.id, None)
    assert (await auth.authenticate(expiring_secret)).api_key_id == expiring.id
    auth.clock.advance(timedelta(minutes=1))
    for refused in (revoked_secret, expiring_secret, a_key("unknown")[1]):
        with pytest.raises(InvalidToken, match=INVALID):
            await auth.authenticate(refused)
    user.disabled = True
    await auth.save(user)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(active_secret)
