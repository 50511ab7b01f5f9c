"""Email verification tokens: what a verification link carries, signed, short-lived."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.users import User


class EmailVerificationTokens(Protocol):
    def issue(self, user: User, expires_at: datetime) -> str:
        """A token for ``user`` until ``expires_at``, URL-safe, good only while the user keeps
        the address they have now and the account does not change (``updated_at``: a
        disabling changes it, so a link sent before one stays dead after the account is
        enabled again)."""
        ...

    def user_of(self, value: str, now: datetime) -> UUID:
        """The user ``value`` names. Raises ``EmailVerificationInvalid`` for a value that is
        malformed or expired at ``now``; the error never contains the value."""
        ...

    def issued_for(self, value: str, user: User) -> bool:
        """Whether ``value`` was issued for ``user`` as they are now: the same address and
        last change (compared in constant time)."""
        ...
