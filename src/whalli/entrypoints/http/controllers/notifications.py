"""In-app notifications: /api/notifications (the caller's own; nobody sees another's)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from whalli.domain.model import notifications as model
from whalli.domain.model.principal import Principal
from whalli.domain.services.notifications.count_unread import CountUnreadNotificationsHandler
from whalli.domain.services.notifications.list_notifications import (
    ListNotifications,
    ListNotificationsHandler,
)
from whalli.domain.services.notifications.mark_read import (
    MarkAllNotificationsReadHandler,
    MarkNotificationRead,
    MarkNotificationReadHandler,
)
from whalli.domain.services.searches.access import DEFAULT_PAGE_SIZE
from whalli.entrypoints.http.paths import root_of
from whalli.entrypoints.http.schemas import Schema


class Notification(Schema):
    id: UUID
    kind: str  # "search_results": new results of a recurring search
    title: str
    body: str
    link: str | None  # no default: always present (the API path to what it is about)
    read_at: datetime | None  # null while unread
    created_at: datetime


class NotificationPage(Schema):
    items: list[Notification]
    next_cursor: str | None  # no default: always present, null on the last page


class UnreadCount(Schema):
    count: int


class MarkedRead(Schema):
    marked: int


def _notification(found: model.Notification, request: Request[Any, Any, Any]) -> Notification:
    """The notification as answered: its link (an API path) under the app's root path."""
    answer = msgspec.convert(found, Notification, from_attributes=True)
    if answer.link is not None and answer.link.startswith("/"):
        answer.link = root_of(request.scope) + answer.link
    return answer


class NotificationController(Controller):
    """The caller's notifications, newest first; another user's answers 404."""

    path = "/api/notifications"
    tags = ["notifications"]

    @get("/", summary="The caller's notifications, newest first (cursor pagination)")
    async def index(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        list_notifications: NamedDependency[ListNotificationsHandler],
        unread: Annotated[bool, QueryParameter(description="true: only the unread")] = False,
        limit: Annotated[int, QueryParameter(description="1 to 100")] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[
            str | None, QueryParameter(description="nextCursor of the previous page")
        ] = None,
    ) -> NotificationPage:
        command = ListNotifications(
            user_id=principal.user_id, unread_only=unread, limit=limit, cursor=cursor
        )
        page = await list_notifications.execute(command)
        items = [_notification(n, request) for n in page.items]
        return NotificationPage(items=items, next_cursor=page.next_cursor)

    @get("/unread-count", summary="How many of the caller's notifications are unread")
    async def unread_count(
        self,
        principal: NamedDependency[Principal],
        count_unread_notifications: NamedDependency[CountUnreadNotificationsHandler],
    ) -> UnreadCount:
        return UnreadCount(count=await count_unread_notifications.execute(principal.user_id))

    @post("/{notification_id:uuid}/read", status_code=200, summary="Mark a notification read")
    async def mark_read(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        mark_notification_read: NamedDependency[MarkNotificationReadHandler],
        notification_id: FromPath[UUID],
    ) -> Notification:
        command = MarkNotificationRead(user_id=principal.user_id, notification_id=notification_id)
        return _notification(await mark_notification_read.execute(command), request)

    @post("/read-all", status_code=200, summary="Mark every notification of the caller read")
    async def mark_all_read(
        self,
        principal: NamedDependency[Principal],
        mark_all_notifications_read: NamedDependency[MarkAllNotificationsReadHandler],
    ) -> MarkedRead:
        return MarkedRead(marked=await mark_all_notifications_read.execute(principal.user_id))
