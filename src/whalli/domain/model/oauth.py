"""Sign-in through an OAuth provider (GitHub, Google)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from whalli.domain.model.base import Entity, Value


class OAuthProviderName(StrEnum):
    GITHUB = "github"
    GOOGLE = "google"


class OAuthProfile(Value, frozen=True, kw_only=True):
    """Who the provider says the user is. ``email`` is ``None`` when it has no verified one."""

    provider: OAuthProviderName
    subject: str  # the provider's stable user id
    email: str | None
    email_verified: bool
    name: str = ""


class OAuthIdentity(Entity, kw_only=True):
    """A provider account linked to a Whalli user."""

    provider: OAuthProviderName
    subject: str
    user_id: UUID
    email: str | None = None
    created_at: datetime
