"""In-app notifications, in memory."""

from __future__ import annotations

from datetime import datetime
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

    async def get_for_update(self, notification_id: UUID) -> Notification:
        await self._tx().lock("notifications", notification_id)
        return await self.get(notification_id)

    async def update(self, notification: Notification) -> None:
        self._tx().replace("notifications", notification.id, notification, NotificationNotFound)

    async def list_for_user(
        self,
        user_id: UUID,
        *,
        unread_only: bool = False,
        limit: int = 50,
        before: tuple[datetime, UUID] | None = None,
    ) -> list[Notification]:
        check_limit(limit)
        found: list[Notification] = self._tx().select(
            "notifications",
            lambda n: (
                n.user_id == user_id
                and not (unread_only and n.read_at is not None)
                and (before is None or (n.created_at, n.id) < before)
            ),
        )
        return sorted(found, key=lambda n: (n.created_at, n.id), reverse=True)[:limit]

    async def count_unread(self, user_id: UUID) -> int:
        return len(await self._unread(user_id))

    async def mark_all_read(self, user_id: UUID, now: datetime) -> int:
        unread = await self._unread(user_id)
        for notification in unread:
            notification.mark_read(now)
            self._tx().replace("notifications", notification.id, notification, NotificationNotFound)
        return len(unread)

    async def _unread(self, user_id: UUID) -> list[Notification]:
        found: list[Notification] = self._tx().select(
            "notifications", lambda n: n.user_id == user_id and n.read_at is None
        )
        return found
