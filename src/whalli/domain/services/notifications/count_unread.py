"""Use case: how many of the caller's notifications are unread."""

from __future__ import annotations

from uuid import UUID

from whalli.ports.unit_of_work import UnitOfWork


class CountUnreadNotificationsHandler:
    """The number of the caller's unread notifications (a badge's count)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, user_id: UUID) -> int:
        async with self._uow.read_only() as uow:
            return await uow.notifications.count_unread(user_id)
