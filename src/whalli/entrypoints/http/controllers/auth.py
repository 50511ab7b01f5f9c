"""Accounts and sessions: /api/auth (sign-up, sign-in, refresh and sign-out are public)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import structlog
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import JSONBody

from whalli.domain.model import users as model
from whalli.domain.model.principal import Principal
from whalli.domain.services.auth.change_password import ChangePassword, ChangePasswordHandler
from whalli.domain.services.auth.delete_account import DeleteAccount, DeleteAccountHandler
from whalli.domain.services.auth.get_profile import GetProfile, GetProfileHandler, Profile
from whalli.domain.services.auth.login import Login, LoginHandler
from whalli.domain.services.auth.logout import Logout, LogoutHandler
from whalli.domain.services.auth.logout_all import LogoutAll, LogoutAllHandler
from whalli.domain.services.auth.refresh_session import RefreshSession, RefreshSessionHandler
from whalli.domain.services.auth.register import Register, RegisterHandler
from whalli.domain.services.auth.sessions import TokenPair, masked_repr
from whalli.domain.services.auth.update_profile import UpdateProfile, UpdateProfileHandler
from whalli.domain.services.rate_limits import RequestLimits
from whalli.entrypoints.http.rate_limit import request_client_ip
from whalli.entrypoints.http.schemas import Inbound, Schema
from whalli.entrypoints.http.security import PUBLIC, SESSION_ONLY

log = structlog.get_logger(__name__)

# Generous caps that only stop absurd inputs before any work; the use cases apply the rules.
Email = Annotated[str, msgspec.Meta(max_length=320)]
Password = Annotated[str, msgspec.Meta(max_length=1024)]
Name = Annotated[str, msgspec.Meta(max_length=200)]
OpaqueToken = Annotated[str, msgspec.Meta(max_length=512)]
# (the rule, 20,000 characters once trimmed, is the use case's: a 422 naming the limit)
Instructions = Annotated[str, msgspec.Meta(max_length=100_000)]


class RegisterBody(Inbound):
    email: Email
    password: Password
    name: Name = ""

    def __repr__(self) -> str:
        return masked_repr(self, "password")


class LoginBody(Inbound):
    email: Email
    password: Password

    def __repr__(self) -> str:
        return masked_repr(self, "password")


class RefreshBody(Inbound):
    refresh_token: OpaqueToken

    def __repr__(self) -> str:
        return masked_repr(self, "refresh_token")


class PasswordChange(Inbound):
    current_password: Password
    new_password: Password

    def __repr__(self) -> str:
        return masked_repr(self, "current_password", "new_password")


class AccountDeletion(Inbound):
    """The confirmation: the password, or the address of an account without one (OAuth)."""

    password: Password | None = None
    email: Email | None = None

    def __repr__(self) -> str:
        return masked_repr(self, "password", "email")


class AccountUpdate(Inbound, omit_defaults=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    # null or blank clears them
    custom_instructions: Instructions | msgspec.UnsetType | None = msgspec.UNSET


class Tokens(Schema):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: Literal["Bearer"]  # always sent (a default would be omitted)

    def __repr__(self) -> str:
        return masked_repr(self, "access_token", "refresh_token")


class Account(Schema):
    id: UUID
    email: str
    name: str
    role: model.Role
    plan: model.Plan
    email_verified: bool
    # whether it signs in with a password (else only through providers): a deletion is then
    # confirmed with it, else with the address, and it may change it
    has_password: bool
    created_at: datetime
    # the system prompt of a new chat started without one; always sent (null: none)
    custom_instructions: str | None


class Registration(Schema):
    user: Account
    tokens: Tokens


def tokens_of(pair: TokenPair) -> Tokens:
    return Tokens(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
        token_type=pair.token_type,
    )


def _account(user: model.User, custom_instructions: str | None = None) -> Account:
    return Account(
        id=user.id, email=user.email, name=user.name, role=user.role, plan=user.plan,
        email_verified=user.email_verified, has_password=user.password_hash is not None,
        created_at=user.created_at, custom_instructions=custom_instructions,
    )  # fmt: skip


def _profile(profile: Profile) -> Account:
    return _account(profile.user, profile.custom_instructions)


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]
    # Responses carrying tokens or account data must not be stored by any cache (RFC 6749 5.1).
    cache_control = CacheControlHeader(no_store=True)

    @post("/register", opt=PUBLIC, summary="Create an account and sign in (201)")
    async def register(
        self, data: JSONBody[RegisterBody], register: NamedDependency[RegisterHandler]
    ) -> Registration:
        command = Register(email=data.email, password=data.password, name=data.name)
        user, tokens = await register.execute(command)
        return Registration(user=_account(user), tokens=tokens_of(tokens))

    @post("/login", opt=PUBLIC, status_code=200, summary="Sign in with email and password")
    async def login(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[LoginBody],
        login: NamedDependency[LoginHandler],
        request_limits: NamedDependency[RequestLimits],
    ) -> Tokens:
        # Counted per (account, IP) and per IP before the password is checked (429 when over).
        await request_limits.check_login(data.email, request_client_ip(request))
        return tokens_of(await login.execute(Login(email=data.email, password=data.password)))

    @post(
        "/refresh",
        opt=PUBLIC,
        status_code=200,
        summary="Trade a refresh token for a new pair (the old one is spent)",
    )
    async def refresh(
        self, data: JSONBody[RefreshBody], refresh_session: NamedDependency[RefreshSessionHandler]
    ) -> Tokens:
        pair = await refresh_session.execute(RefreshSession(refresh_token=data.refresh_token))
        return tokens_of(pair)

    @post("/logout", opt=PUBLIC, status_code=204, summary="End the session of a refresh token")
    async def logout(
        self, data: JSONBody[RefreshBody], logout: NamedDependency[LogoutHandler]
    ) -> None:
        await logout.execute(Logout(refresh_token=data.refresh_token))

    @post("/logout-all", status_code=204, summary="End every session of the caller")
    async def logout_all(
        self, principal: NamedDependency[Principal], logout_all: NamedDependency[LogoutAllHandler]
    ) -> None:
        await logout_all.execute(LogoutAll(user_id=principal.user_id))

    @post(
        "/password",
        opt=SESSION_ONLY,
        status_code=200,
        summary="Change the password (not with an API key): ends every session, opens a new one",
    )
    async def change_password(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PasswordChange],
        principal: NamedDependency[Principal],
        change_password: NamedDependency[ChangePasswordHandler],
        request_limits: NamedDependency[RequestLimits],
    ) -> Tokens:
        command = ChangePassword(
            user_id=principal.user_id, current_password=data.current_password,
            new_password=data.new_password, api_key_id=principal.api_key_id,
        )  # fmt: skip
        change_password.refuse_api_key(command)  # a 403 first: a key's attempt is no login
        # Counted like a login of this account (429 when over), before the password is checked.
        await request_limits.check_login(principal.user.email, request_client_ip(request))
        return tokens_of(await change_password.execute(command))

    @get("/me", summary="The caller's account, with their custom instructions")
    async def me(
        self, principal: NamedDependency[Principal], get_profile: NamedDependency[GetProfileHandler]
    ) -> Account:
        command = GetProfile(user_id=principal.user_id, user=principal.user)
        return _profile(await get_profile.execute(command))

    @patch("/me", summary="Change the caller's display name or custom instructions")
    async def update_me(
        self,
        data: JSONBody[AccountUpdate],
        principal: NamedDependency[Principal],
        update_profile: NamedDependency[UpdateProfileHandler],
    ) -> Account:
        name = None if isinstance(data.name, msgspec.UnsetType) else data.name
        instructions = data.custom_instructions
        command = UpdateProfile(
            user_id=principal.user_id,
            name=name,
            # UNSET leaves them; null clears them, as blank does
            custom_instructions=None if isinstance(instructions, msgspec.UnsetType)
            else instructions or "",
        )  # fmt: skip
        return _profile(await update_profile.execute(command))

    @delete(
        "/me",
        opt=SESSION_ONLY,
        summary="Delete the caller's account with every project it owns and everything in them"
        " (not with an API key; confirmed by the password, or by the address without one)",
    )
    async def delete_me(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[AccountDeletion],
        principal: NamedDependency[Principal],
        delete_account: NamedDependency[DeleteAccountHandler],
        request_limits: NamedDependency[RequestLimits],
    ) -> None:
        command = DeleteAccount(
            user_id=principal.user_id, password=data.password, email=data.email,
            api_key_id=principal.api_key_id, session_id=principal.session_id,
        )  # fmt: skip
        delete_account.refuse_api_key(command)  # a 403 first: a key's attempt is no login
        # Counted like a login of this account (429 when over), before the password is checked.
        await request_limits.check_login(principal.user.email, request_client_ip(request))
        await delete_account.execute(command)
        log.info("account_deleted", user_id=str(principal.user_id))
