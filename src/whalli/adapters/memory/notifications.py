"""In-app notifications, in memory."""

from __future__ import annotations

from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository, check_limit
from whalli.domain.model.errors import NotificationNotFound
from whalli.domain.model.notifications import Notification
from whalli.ports.notifications import NotificationRepository


class InMemoryNotificationRepository(MemoryRepository, NotificationRepository):
    async def add(self, notification: Notification) -> None:
        self._tx().insert("notifications", notification.id, notification)

    async def get(self, notification_id: UUID) -> Notification:
        found: Notification = self._tx().get("notifications", notification_id, NotificationNotFound)
        return found

    async def update(self, notification: Notification) -> None:
        self._tx().replace("notifications", notification.id, notification, NotificationNotFound)

    async def list_for_user(
        self, user_id: UUID, *, unread_only: bool = False, limit: int = 50
    ) -> list[Notification]:
        check_limit(limit)
        found: list[Notification] = self._tx().select(
            "notifications",
            lambda n: n.user_id == user_id and not (unread_only and n.read_at is not None),
        )
        return sorted(found, key=lambda n: (n.created_at, n.id), reverse=True)[:limit]
