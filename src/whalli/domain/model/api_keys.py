"""Personal API keys: a secret shown once, stored as its SHA-256, accepted wherever a JWT is."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from uuid import UUID

from whalli.domain.model.base import Entity
from whalli.domain.model.chats import clean_name
from whalli.domain.model.expiry import check_expiry, in_force

API_KEY_PREFIX = "whk_"  # lets a client (and a secret scanner) tell a key from a JWT
API_KEY_NAME_MAX = 100
# An expiry further away than this is refused (a key meant to last forever has none).
API_KEY_MAX_LIFETIME = timedelta(days=10 * 365)


def hash_api_key(secret: str) -> str:
    """SHA-256 hex: the key is >= 256 random bits, so a fast digest is safe and indexable."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(API_KEY_PREFIX)


class ApiKey(Entity, kw_only=True):
    id: UUID
    user_id: UUID
    name: str
    key_hash: str
    display_prefix: str  # the first characters of the secret, to recognise it in a list
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @classmethod
    def create(
        cls,
        *,
        id: UUID,
        user_id: UUID,
        name: str,
        secret: str,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> ApiKey:
        cleaned = clean_name(name, limit=API_KEY_NAME_MAX, field="name", what="A key name")
        check_expiry(expires_at, now, API_KEY_MAX_LIFETIME, "a key")
        if not looks_like_api_key(secret) or len(secret) < len(API_KEY_PREFIX) + 43:
            raise ValueError("an API key secret must carry at least 256 random bits")
        return cls(
            id=id,
            user_id=user_id,
            name=cleaned,
            key_hash=hash_api_key(secret),
            display_prefix=secret[: len(API_KEY_PREFIX) + 6],
            created_at=now,
            expires_at=expires_at,
        )

    def is_active(self, now: datetime) -> bool:
        return in_force(self.expires_at, self.revoked_at, now)

    def revoke(self, now: datetime) -> None:
        if self.revoked_at is None:
            self.revoked_at = now
