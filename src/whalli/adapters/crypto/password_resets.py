"""Password reset tokens as ``<user id>.<expiry>.<HMAC-SHA256>`` (URL-safe, no padding).

- Nothing is stored: the signature covers the user, the expiry, and the user's address and
  password hash at issue time, so the token is good once (the reset changes the hash) and
  never after the address or the password changed some other way.
- The key is derived from the server's secret for this one purpose (HMAC of a fixed label),
  so no other value signed with that secret is ever a valid token, nor a token anything else.
- The signature is compared in constant time and truncated to 128 bits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from uuid import UUID

from whalli.domain.model.errors import PasswordResetInvalid
from whalli.domain.model.users import User
from whalli.ports.password_resets import PasswordResetTokens

_LABEL = b"whalli password reset v1"
_MAC_BYTES = 16
_MAX_LENGTH = 128


class HmacPasswordResetTokens(PasswordResetTokens):
    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a password reset token needs a secret")
        self._key = hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()

    def issue(self, user: User, expires_at: datetime) -> str:
        body = f"{user.id.hex}.{int(expires_at.timestamp())}"
        return f"{body}.{self._sign(body, user)}"

    def user_of(self, value: str, now: datetime) -> UUID:
        parts = value.split(".") if len(value) <= _MAX_LENGTH else []
        try:
            user_hex, expires, _ = parts
            user_id = UUID(hex=user_hex)
            expires_at = datetime.fromtimestamp(int(expires), UTC)
        except (ValueError, OverflowError, OSError):  # (a year past 9999, say)
            raise PasswordResetInvalid(field="token") from None
        if now >= expires_at:
            raise PasswordResetInvalid(field="token")
        return user_id

    def issued_for(self, value: str, user: User) -> bool:
        body, _, mac = value.rpartition(".")
        if len(value) > _MAX_LENGTH or not body.startswith(f"{user.id.hex}."):
            return False
        return hmac.compare_digest(_bytes(mac), self._sign(body, user).encode())

    def _sign(self, body: str, user: User) -> str:
        signed = f"{body}\n{user.email}\n{user.password_hash or ''}"
        digest = hmac.new(self._key, _bytes(signed), hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _bytes(text: str) -> bytes:
    # (a body can carry anything, a lone surrogate included: it must not raise here)
    return text.encode("utf-8", "surrogatepass")
