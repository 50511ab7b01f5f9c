"""Storage of in-app notifications."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from whalli.domain.model.notifications import Notification


class NotificationRepository(Protocol):
    async def add(self, notification: Notification) -> None: ...

    async def get(self, notification_id: UUID) -> Notification:
        """Raises ``NotificationNotFound``."""
        ...

    async def update(self, notification: Notification) -> None:
        """Raises ``NotificationNotFound``."""
        ...

    async def list_for_user(
        self, user_id: UUID, *, unread_only: bool = False, limit: int = 50
    ) -> list[Notification]:
        """Newest first."""
        ...
