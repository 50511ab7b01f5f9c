"""Use case: one page of the caller's notifications, newest first."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.notifications import Notification
from whalli.domain.services.searches.access import DEFAULT_PAGE_SIZE, next_cursor, page_start
from whalli.ports.unit_of_work import UnitOfWork


class ListNotifications(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    unread_only: bool = False
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None


class NotificationPage(Value, frozen=True, kw_only=True):
    items: list[Notification]
    next_cursor: str | None  # None on the last page


class ListNotificationsHandler:
    """The caller's own notifications (nobody sees another's), newest first (``created_at``,
    id), only the unread ones with ``unread_only``; ``limit`` 1 to 100, cursor as chat lists
    have it (``InvalidInput`` otherwise)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListNotifications) -> NotificationPage:
        before = page_start(command.limit, command.cursor)
        async with self._uow.read_only() as uow:
            found = await uow.notifications.list_for_user(
                command.user_id,
                unread_only=command.unread_only,
                limit=command.limit + 1,
                before=before,
            )
        items = found[: command.limit]
        last = (items[-1].created_at, items[-1].id) if items else None
        cursor = None if last is None else next_cursor(len(found), command.limit, last)
        return NotificationPage(items=items, next_cursor=cursor)
