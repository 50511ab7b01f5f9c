"""Storage of in-app notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.notifications import Notification


class NotificationRepository(Protocol):
    async def add(self, notification: Notification) -> None: ...

    async def get(self, notification_id: UUID) -> Notification:
        """Raises ``NotificationNotFound``."""
        ...

    async def get_for_update(self, notification_id: UUID) -> Notification:
        """Like ``get``, and lock the notification until the unit of work ends: a second unit
        of work calling it (or ``mark_all_read``) waits, then reads it as committed, so that
        a change written back whole undoes none made meanwhile. Raises
        ``NotificationNotFound``."""
        ...

    async def update(self, notification: Notification) -> None:
        """Raises ``NotificationNotFound``."""
        ...

    async def list_for_user(
        self,
        user_id: UUID,
        *,
        unread_only: bool = False,
        limit: int = 50,
        before: tuple[datetime, UUID] | None = None,
    ) -> list[Notification]:
        """Newest first (``created_at``, then id); with ``before``, only those after it."""
        ...

    async def count_unread(self, user_id: UUID) -> int: ...

    async def mark_all_read(self, user_id: UUID, now: datetime) -> int:
        """Mark every unread notification of ``user_id`` read at ``now``; return how many."""
        ...
