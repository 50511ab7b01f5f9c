"""Links Whalli emails to an account: a forgotten password's reset link, and the link that
verifies an account's address (/api/auth/password/forgot and /reset are public)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import JSONBody

from whalli.domain.model.principal import Principal
from whalli.domain.services.auth.request_email_verification import (
    RequestEmailVerification,
    RequestEmailVerificationHandler,
)
from whalli.domain.services.auth.request_password_reset import (
    RequestPasswordReset,
    RequestPasswordResetHandler,
)
from whalli.domain.services.auth.reset_password import ResetPassword, ResetPasswordHandler
from whalli.domain.services.auth.sessions import masked_repr
from whalli.domain.services.auth.verify_email import VerifyEmail, VerifyEmailHandler
from whalli.domain.services.rate_limits import RequestLimits
from whalli.entrypoints.http.controllers.auth import Email, OpaqueToken, Password, Tokens, tokens_of
from whalli.entrypoints.http.rate_limit import request_client_ip
from whalli.entrypoints.http.schemas import Inbound, Schema
from whalli.entrypoints.http.security import PUBLIC, SESSION_ONLY


class ResetRequest(Inbound):
    email: Email


class ResetRequested(Schema):
    """The same answer whether an account holds the address or not."""

    message: str


RESET_REQUESTED = ResetRequested(
    message="If an account uses this address, an email with a link to reset its password is "
    "on its way. The link works once, for a limited time."
)


class PasswordReset(Inbound):
    token: OpaqueToken
    new_password: Password

    def __repr__(self) -> str:
        return masked_repr(self, "token", "new_password")


class EmailConfirmation(Inbound):
    token: OpaqueToken

    def __repr__(self) -> str:
        return masked_repr(self, "token")


class VerificationRequested(Schema):
    message: str


class EmailVerified(Schema):
    email: str
    email_verified: bool


VERIFICATION_REQUESTED = VerificationRequested(
    message="An email with a link to confirm your address is on its way; open it signed in."
)


class AccountLinksController(Controller):
    path = "/api/auth"
    tags = ["auth"]
    # Responses carrying tokens must not be stored by any cache (RFC 6749 5.1).
    cache_control = CacheControlHeader(no_store=True)

    @post(
        "/password/forgot",
        opt=PUBLIC,
        status_code=202,
        summary="Email a password reset link to the account holding an address, if one does"
        " (the same 202 either way)",
    )
    async def forgot_password(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ResetRequest],
        request_password_reset: NamedDependency[RequestPasswordResetHandler],
        request_limits: NamedDependency[RequestLimits],
    ) -> ResetRequested:
        request_password_reset.refuse_if_off()  # a 422 first: nothing counted, nothing queued
        # Counted per address and per IP (429 when over), whether an account holds it or not.
        await request_limits.check_password_reset(data.email, request_client_ip(request))
        await request_password_reset.execute(RequestPasswordReset(email=data.email))
        return RESET_REQUESTED

    @post(
        "/password/reset",
        opt=PUBLIC,
        status_code=200,
        summary="Set a new password with a reset link's token: ends every session, opens one",
    )
    async def reset_password(
        self, data: JSONBody[PasswordReset], reset_password: NamedDependency[ResetPasswordHandler]
    ) -> Tokens:
        command = ResetPassword(token=data.token, new_password=data.new_password)
        return tokens_of(await reset_password.execute(command))

    @post(
        "/email/verify",
        opt=SESSION_ONLY,
        status_code=202,
        summary="Email the caller a link that confirms their address (409 if it is already;"
        " not with an API key)",
    )
    async def ask_email_verification(
        self,
        principal: NamedDependency[Principal],
        request_email_verification: NamedDependency[RequestEmailVerificationHandler],
        request_limits: NamedDependency[RequestLimits],
    ) -> VerificationRequested:
        command = RequestEmailVerification(
            user_id=principal.user_id, api_key_id=principal.api_key_id
        )
        # 403, 422, 409 first: a refused request is not counted
        await request_email_verification.refuse(command)
        await request_limits.check_email_verification(principal.user_id)  # (429 when over)
        await request_email_verification.execute(command)
        return VERIFICATION_REQUESTED

    @post(
        "/email/confirm",
        opt=SESSION_ONLY,
        status_code=200,
        summary="Confirm the caller's address with the token of the link emailed to it"
        " (not with an API key)",
    )
    async def confirm_email(
        self,
        data: JSONBody[EmailConfirmation],
        principal: NamedDependency[Principal],
        verify_email: NamedDependency[VerifyEmailHandler],
    ) -> EmailVerified:
        command = VerifyEmail(
            user_id=principal.user_id, token=data.token, api_key_id=principal.api_key_id
        )
        user = await verify_email.execute(command)
        return EmailVerified(email=user.email, email_verified=user.email_verified)
