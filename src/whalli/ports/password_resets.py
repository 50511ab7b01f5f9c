"""Password reset tokens: what a reset link carries, signed, short-lived, good once."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.users import User


class PasswordResetTokens(Protocol):
    def issue(self, user: User, expires_at: datetime) -> str:
        """A token for ``user`` until ``expires_at``, URL-safe. It stays good only while the
        user keeps the address and the password they have now and the account does not
        change (``updated_at``), so a reset (which changes the password) uses it up, and so
        does any other change: a disabling, above all, so that enabling the account again
        does not revive a link sent before."""
        ...

    def user_of(self, value: str, now: datetime) -> UUID:
        """The user ``value`` names. Raises ``PasswordResetInvalid`` for a value that is
        malformed or expired at ``now``; the error never contains the value. Whether it was
        issued for that user as they are now is ``issued_for``'s to say."""
        ...

    def issued_for(self, value: str, user: User) -> bool:
        """Whether ``value`` was issued for ``user`` as they are now: the same account, address,
        password and last change (compared in constant time)."""
        ...
