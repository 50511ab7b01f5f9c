"""Password reset tokens: ``HmacAccountLinks`` bound to the account's address and password
hash (and, as every account link, its last change), so a reset (which changes the hash) uses
its token up, and so does any other change."""

from __future__ import annotations

from whalli.adapters.crypto.account_links import HmacAccountLinks
from whalli.domain.model.errors import PasswordResetInvalid
from whalli.ports.password_resets import PasswordResetTokens


class HmacPasswordResetTokens(HmacAccountLinks, PasswordResetTokens):
    def __init__(self, secret: str) -> None:
        super().__init__(
            secret,
            label=b"whalli password reset v1",
            bound=lambda user: f"{user.email}\n{user.password_hash or ''}",
            invalid=lambda: PasswordResetInvalid(field="token"),
        )
