"""Who is calling: the authenticated user, read fresh for this request, and how they proved it."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.domain.model.base import Value
from whalli.domain.model.users import User


class CredentialId(Value, frozen=True, kw_only=True):
    """Which credential of its user a request proved itself with: its login session (the
    refresh-token family its access token belongs to) or its API key. What was handed out
    under it (a chat session id, a reader pass) records it, so that it admits nobody once that
    credential has ended; both ``None``: not known (recorded before it existed)."""

    login_session_id: UUID | None = None
    api_key_id: UUID | None = None


class Principal(Value, frozen=True, kw_only=True):
    user: User
    session_id: UUID | None = None  # set when authenticated by an access token
    api_key_id: UUID | None = None  # set when authenticated by an API key
    # When ``user`` was read (just before the read); None: not read by this authentication
    read_at: datetime | None = None

    @property
    def user_id(self) -> UUID:
        return self.user.id

    @property
    def credential(self) -> CredentialId:
        return CredentialId(login_session_id=self.session_id, api_key_id=self.api_key_id)
