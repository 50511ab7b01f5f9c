"""Who is calling: the authenticated user, read fresh for this request, and how they proved it."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.domain.model.base import Value
from whalli.domain.model.users import User


class Principal(Value, frozen=True, kw_only=True):
    user: User
    session_id: UUID | None = None  # set when authenticated by an access token
    api_key_id: UUID | None = None  # set when authenticated by an API key
    # When ``user`` was read (just before the read); None: not read by this authentication
    read_at: datetime | None = None

    @property
    def user_id(self) -> UUID:
        return self.user.id
