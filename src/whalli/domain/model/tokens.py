"""Credential tokens: the claims of a short-lived access token and rotating refresh tokens.

A login opens a *session*, which is a refresh-token family: the first refresh token is issued
with a fresh ``family_id`` and each refresh spends the presented token and issues its successor
(``parent_id`` links the lineage). The family has an absolute lifetime counted from the login,
so rotating never extends it. Presenting a spent token again means it was copied: the caller
must revoke the whole family (``RefreshTokenReused``), unless it comes within a short grace
window of the first use (two tabs refreshing at once), which issues a second successor.

A refresh token is an opaque random secret (>= 256 bits) handed to the client once; only its
SHA-256 is stored. No salt or slow hash is needed: a 256-bit random secret cannot be guessed
from its hash, and an unsalted digest can be looked up by an index.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from whalli.domain.model.base import Entity, Value, utc
from whalli.domain.model.errors import InvalidToken, RefreshTokenReused

ACCESS_TOKEN_TYPE: Literal["access"] = "access"  # noqa: S105 (a claim value, not a secret)
REFRESH_TOKEN_TYPE: Literal["refresh"] = "refresh"  # noqa: S105
DEFAULT_ACCESS_TTL = timedelta(minutes=15)
DEFAULT_REFRESH_TTL = timedelta(days=30)
# Secrets come from ``IdGenerator.new_token(REFRESH_SECRET_BYTES)`` (base64url, 43 characters).
REFRESH_SECRET_BYTES = 32
REFRESH_SECRET_MIN_LENGTH = 43


class AccessClaims(Value, frozen=True, kw_only=True):
    """What a verified access token says: who, for which session, and when it is good for.

    Times are whole seconds (JWT NumericDate), so claims survive an encode/decode round trip.
    """

    subject: UUID  # the user id
    session_id: UUID  # the refresh-token family the token was minted for
    issued_at: datetime
    expires_at: datetime
    jti: str
    token_type: Literal["access"] = ACCESS_TOKEN_TYPE

    @classmethod
    def new(
        cls,
        *,
        subject: UUID,
        session_id: UUID,
        jti: str,
        now: datetime,
        ttl: timedelta = DEFAULT_ACCESS_TTL,
    ) -> AccessClaims:
        if ttl < timedelta(seconds=1):
            raise ValueError("an access token ttl must be at least one second")
        if not jti:
            raise ValueError("an access token needs a jti")
        issued_at = utc(now).replace(microsecond=0)
        return cls(
            subject=subject,
            session_id=session_id,
            jti=jti,
            issued_at=issued_at,
            expires_at=issued_at + timedelta(seconds=int(ttl.total_seconds())),
        )

    @property
    def lifetime(self) -> timedelta:
        return self.expires_at - self.issued_at


def hash_refresh_secret(secret: str) -> str:
    """The lowercase hex SHA-256 of the secret's UTF-8 bytes: what the database stores."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _check_secret(secret: str) -> None:
    if len(secret) < REFRESH_SECRET_MIN_LENGTH:
        raise ValueError("a refresh token secret must carry at least 256 random bits")


class RefreshToken(Entity, kw_only=True):
    id: UUID
    user_id: UUID
    family_id: UUID
    token_hash: str
    parent_id: UUID | None = None
    created_at: datetime
    expires_at: datetime  # the family's absolute end: its creation + the refresh ttl
    used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def issue(
        cls,
        *,
        id: UUID,
        user_id: UUID,
        family_id: UUID,
        secret: str,
        now: datetime,
        ttl: timedelta = DEFAULT_REFRESH_TTL,
    ) -> RefreshToken:
        """The first token of a new family (a login); the family ends ``ttl`` after ``now``."""
        _check_secret(secret)
        if ttl <= timedelta(0):
            raise ValueError("a refresh token ttl must be positive")
        created_at = utc(now)
        return cls(
            id=id,
            user_id=user_id,
            family_id=family_id,
            token_hash=hash_refresh_secret(secret),
            created_at=created_at,
            expires_at=created_at + ttl,
        )

    def is_active(self, now: datetime) -> bool:
        """Neither spent nor revoked, and the family's lifetime has not run out."""
        return self.used_at is None and self.revoked_at is None and utc(now) < self.expires_at

    def matches(self, secret: str) -> bool:
        """Whether ``secret`` is this token's secret (constant-time comparison of digests)."""
        return hmac.compare_digest(hash_refresh_secret(secret), self.token_hash)

    def rotate(self, *, new_id: UUID, new_secret: str, now: datetime) -> RefreshToken:
        """Spend this token and return its successor in the same family.

        The successor keeps the family's ``expires_at``: rotation never extends a session.
        Raises ``RefreshTokenReused`` if this token was already spent (the caller must revoke
        the family), ``InvalidToken`` if it was revoked or the family has expired.
        """
        _check_secret(new_secret)
        when = utc(now)
        if self.used_at is not None:
            raise RefreshTokenReused()
        if not self.is_active(when):
            raise InvalidToken("The refresh token has expired or was revoked.")
        self.used_at = when
        return self._successor(new_id, new_secret, when)

    def reissue(
        self, *, new_id: UUID, new_secret: str, now: datetime, grace: timedelta
    ) -> RefreshToken:
        """A second successor of this spent token, when it is presented again within ``grace``.

        Two tabs of one browser that refresh at the same moment both present the same token;
        the second must not end the session. Within ``grace`` of the first use a sibling of
        the first successor is issued (same family and expiry, ``parent_id`` this token); this
        token's ``used_at`` stays, so the window never slides. Later than that, or with no
        grace, a spent token presented again is reuse (``RefreshTokenReused``).
        """
        _check_secret(new_secret)
        when = utc(now)
        if self.used_at is None:
            raise ValueError("only a spent token is reissued; an active one is rotated")
        if self.revoked_at is not None or when >= self.expires_at:
            raise InvalidToken("The refresh token has expired or was revoked.")
        if not self.reissuable(when, grace):
            raise RefreshTokenReused()
        return self._successor(new_id, new_secret, when)

    def reissuable(self, now: datetime, grace: timedelta) -> bool:
        """Whether this token, spent and not revoked, came back within ``grace`` of its use
        (a second tab's: ``reissue``), rather than as a copy (reuse)."""
        return (
            self.used_at is not None
            and self.revoked_at is None
            and grace > timedelta(0)
            and utc(now) - self.used_at <= grace
        )

    def _successor(self, new_id: UUID, new_secret: str, when: datetime) -> RefreshToken:
        """A child of this token in its family, ending when the family does."""
        return RefreshToken(
            id=new_id,
            user_id=self.user_id,
            family_id=self.family_id,
            token_hash=hash_refresh_secret(new_secret),
            parent_id=self.id,
            created_at=when,
            expires_at=self.expires_at,
        )

    def revoke(self, now: datetime) -> None:
        """Revoke (logout, reuse detected, password change); the first revocation time stays."""
        if self.revoked_at is None:
            self.revoked_at = utc(now)
