"""In-app notifications in Postgres."""

from __future__ import annotations

from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import (
    PostgresRepository,
    assignments,
    check_limit,
    columns,
    placeholders,
)
from whalli.domain.model.errors import NotificationNotFound
from whalli.domain.model.notifications import Notification
from whalli.ports.notifications import NotificationRepository

_COLUMNS = ("id", "user_id", "kind", "title", "body", "link", "read_at", "created_at")
_SELECT = f"SELECT {columns(_COLUMNS)} FROM notifications"
_INSERT = f"INSERT INTO notifications ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)})"
_UPDATE = f"UPDATE notifications SET {assignments(_COLUMNS[1:])} WHERE id = %(id)s"
_NEWEST = "ORDER BY created_at DESC, id DESC LIMIT %(limit)s"


class PostgresNotificationRepository(PostgresRepository, NotificationRepository):
    async def add(self, notification: Notification) -> None:
        await self._run(_INSERT, msgspec.structs.asdict(notification))

    async def get(self, notification_id: UUID) -> Notification:
        return await self._get(f"{_SELECT} WHERE id = %(id)s", notification_id)

    async def get_for_update(self, notification_id: UUID) -> Notification:
        # NO KEY UPDATE: the lock the UPDATE that follows takes anyway
        return await self._get(f"{_SELECT} WHERE id = %(id)s FOR NO KEY UPDATE", notification_id)

    async def _get(self, query: LiteralString, notification_id: UUID) -> Notification:
        row = await self._one(query, {"id": notification_id})
        if row is None:
            raise NotificationNotFound()
        return msgspec.convert(row, Notification)

    async def update(self, notification: Notification) -> None:
        if await self._run(_UPDATE, msgspec.structs.asdict(notification)) == 0:
            raise NotificationNotFound()

    async def list_for_user(
        self,
        user_id: UUID,
        *,
        unread_only: bool = False,
        limit: int = 50,
        before: tuple[datetime, UUID] | None = None,
    ) -> list[Notification]:
        check_limit(limit)
        params: dict[str, Any] = {"user_id": user_id, "limit": limit}
        unread = "AND read_at IS NULL " if unread_only else ""
        if before is not None:
            params["at"], params["before_id"] = before
            unread += "AND (created_at, id) < (%(at)s, %(before_id)s) "
        rows = await self._all(f"{_SELECT} WHERE user_id = %(user_id)s {unread}{_NEWEST}", params)
        return [msgspec.convert(r, Notification) for r in rows]

    async def count_unread(self, user_id: UUID) -> int:
        row = await self._one(
            "SELECT count(*) AS n FROM notifications WHERE user_id = %(user_id)s "
            "AND read_at IS NULL",
            {"user_id": user_id},
        )
        return 0 if row is None else int(row["n"])

    async def mark_all_read(self, user_id: UUID, now: datetime) -> int:
        return await self._run(
            "UPDATE notifications SET read_at = %(now)s "
            "WHERE user_id = %(user_id)s AND read_at IS NULL",
            {"user_id": user_id, "now": now},
        )
