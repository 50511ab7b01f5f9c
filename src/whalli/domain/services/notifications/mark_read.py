"""Use case: mark one notification read, or all of the caller's."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import NotificationNotFound
from whalli.domain.model.notifications import Notification
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class MarkNotificationRead(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    notification_id: UUID


class MarkNotificationReadHandler:
    """Mark the caller's notification read (anyone else's: ``NotificationNotFound``, as a
    missing one); one read already keeps its first time, also when "read all" marked it
    meanwhile (it is locked before it is read)."""

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def execute(self, command: MarkNotificationRead) -> Notification:
        async with self._uow as uow:
            # locked: written back whole, it must not replace a read time committed meanwhile
            notification = await uow.notifications.get_for_update(command.notification_id)
            if notification.user_id != command.user_id:
                raise NotificationNotFound()
            if notification.is_read:
                return notification
            notification.mark_read(self._clock.now())
            await uow.notifications.update(notification)
            await uow.commit()
        return notification


class MarkAllNotificationsReadHandler:
    """Mark every unread notification of the caller read; returns how many were."""

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def execute(self, user_id: UUID) -> int:
        async with self._uow as uow:
            marked = await uow.notifications.mark_all_read(user_id, self._clock.now())
            await uow.commit()
        return marked
