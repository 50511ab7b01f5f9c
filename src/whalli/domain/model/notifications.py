"""In-app notifications (email copies are sent through the email port)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.domain.model.base import Entity


class Notification(Entity, kw_only=True):
    id: UUID
    user_id: UUID
    kind: str
    title: str
    body: str = ""
    link: str | None = None
    read_at: datetime | None = None
    created_at: datetime

    def mark_read(self, now: datetime) -> None:
        if self.read_at is None:
            self.read_at = now

    @property
    def is_read(self) -> bool:
        return self.read_at is not None
