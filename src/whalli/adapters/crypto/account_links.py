"""Tokens of the links Whalli mails to an account, as ``<user id>.<expiry>.<HMAC-SHA256>``
(URL-safe, no padding).

- Nothing is stored: the signature covers the user, the expiry, the account's last change
  (``updated_at``, to the microsecond) and what the link is bound to of the account as it is
  at issue time (``bound``: its address, and for a password reset its password hash), so a
  token stops being good once that changes (a reset uses its own up). The last change binds
  a link to the account's state, not only to its secrets: disabling an account moves it, and
  enabling it again moves it once more, so a link sent before a disabling never works after
  it (the account keeps no value of its own that only a disabling changes; any change of the
  account, a rename say, ends its links as well: ask again).
- The key is derived from the server's secret for one purpose (HMAC of the purpose's label),
  so a token of one purpose is never good for another, nor anything else signed with that
  secret a token.
- The signature is compared in constant time and truncated to 128 bits; a refused value
  raises the purpose's error, which never contains it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from whalli.domain.model.errors import WhalliError
from whalli.domain.model.users import User

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAC_BYTES = 16
_MAX_LENGTH = 128


class HmacAccountLinks:
    def __init__(
        self,
        secret: str,
        *,
        label: bytes,
        bound: Callable[[User], str],
        invalid: Callable[[], WhalliError],
    ) -> None:
        if not secret:
            raise ValueError("an account link needs a secret")
        self._key = hmac.new(secret.encode(), label, hashlib.sha256).digest()
        self._bound, self._invalid = bound, invalid

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
            raise self._invalid() from None
        if now >= expires_at:
            raise self._invalid()
        return user_id

    def issued_for(self, value: str, user: User) -> bool:
        body, _, mac = value.rpartition(".")
        if len(value) > _MAX_LENGTH or not body.startswith(f"{user.id.hex}."):
            return False
        return hmac.compare_digest(_bytes(mac), self._sign(body, user).encode())

    def _sign(self, body: str, user: User) -> str:
        signed = f"{body}\n{_instant(user.updated_at)}\n{self._bound(user)}"
        digest = hmac.new(self._key, _bytes(signed), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:_MAC_BYTES]).rstrip(b"=").decode()


def _bytes(text: str) -> bytes:
    # (a body can carry anything, a lone surrogate included: it must not raise here)
    return text.encode("utf-8", "surrogatepass")


def _instant(at: datetime) -> str:
    """``at`` in whole microseconds since the epoch: exact, whatever its time zone (the store
    gives it back in the session's)."""
    return str((at.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1))
