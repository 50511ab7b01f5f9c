"""Email verification tokens: ``HmacAccountLinks`` bound to the account's address (and, as
every account link, its last change)."""

from __future__ import annotations

from whalli.adapters.crypto.account_links import HmacAccountLinks
from whalli.domain.model.errors import EmailVerificationInvalid
from whalli.ports.email_verifications import EmailVerificationTokens


class HmacEmailVerificationTokens(HmacAccountLinks, EmailVerificationTokens):
    def __init__(self, secret: str) -> None:
        super().__init__(
            secret,
            label=b"whalli email verification v1",
            bound=lambda user: user.email,
            invalid=lambda: EmailVerificationInvalid(field="token"),
        )
