"""Signed, short-lived access tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from whalli.domain.model.tokens import AccessClaims


class AccessTokenIssuer(Protocol):
    """Turns :class:`AccessClaims` into a bearer token and back (a JWT in production).

    Refresh tokens are not issued here: they are opaque secrets (see ``domain.model.tokens``).
    """

    @property
    def ttl(self) -> timedelta:
        """The lifetime to give new claims (``AccessClaims.new(..., ttl=issuer.ttl)``)."""
        ...

    def issue(self, claims: AccessClaims) -> str:
        """Sign ``claims``. Raises ``ValueError`` for claims longer-lived than ``ttl``."""
        ...

    def verify(self, token: str) -> AccessClaims:
        """The claims of a genuine, current access token.

        Raises ``InvalidToken`` when the token is malformed, signed with another key or
        algorithm, carries key-location headers, has expired or is not yet valid, was issued
        for another issuer or audience, or is not an access token. The error never contains
        the token.
        """
        ...
