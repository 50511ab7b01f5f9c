"""Account and session use cases on the real Postgres unit of work (and the in-memory one)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.password_hasher import FastPasswordHasher
from whalli.adapters.system.ids import UuidGenerator
from whalli.domain.model.errors import (
    EmailAlreadyRegistered,
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
)
from whalli.domain.model.principal import Principal
from whalli.domain.model.users import Role, User
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
            self.uow(), hasher=self.hasher, refresh_ttl=timedelta(days=1), **self.ports
        )
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
