"""Hunt (s31): changes of one row written back whole after a read without its lock, on the
real app (uvicorn, Postgres, Redis, S3): a change committed in between would be undone.

As in ``test_s31_hunt_races``, the test holds a row lock from a connection of its own until
the requests wait for it (read from ``pg_blocking_pids``), then lets go: the request queued
first commits first, and the second must not write back what it read before that. No sleep
decides an outcome.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_s31_hunt_races import _released_together, held
from tests.support.resolve import resolved
from whalli.domain.model.notifications import Notification


async def _notifications(chat: Chat, user_id: str, count: int) -> list[uuid.UUID]:
    """``count`` unread notifications of ``user_id``, stored as a search run stores them."""
    made = [uuid.uuid4() for _ in range(count)]
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        for notification_id in made:
            await uow.notifications.add(
                Notification(id=notification_id, user_id=uuid.UUID(user_id),
                             kind="search_results", title="3 new results",
                             created_at=datetime.now(UTC))
            )  # fmt: skip
        await uow.commit()
    return made


async def test_a_notification_marked_read_as_all_are_keeps_the_time_it_was_first_read(
    chat: Chat, migrated_database_url: str
) -> None:
    """The single mark read it unread before "read all" committed; writing the whole row
    back after, it replaced the first read time with its own (a read one keeps its first)."""
    ada = await chat.world.register("ada")
    first, other = await _notifications(chat, ada["user"]["id"], 2)

    lock_first = "SELECT 1 FROM notifications WHERE id = %(id)s FOR UPDATE"
    async with held(migrated_database_url, lock_first, id=first) as lock:
        marking_all = await _released_together(
            lock, chat.client.post("/api/notifications/read-all", headers=ada["auth"])
        )
        marking_one = await _released_together(
            lock, chat.client.post(f"/api/notifications/{first}/read", headers=ada["auth"])
        )
        await lock.waited_by(2)
    all_read, one_read = await asyncio.gather(*marking_all, *marking_one)

    assert all_read.status_code == 200, all_read.text
    assert all_read.json()["marked"] == 2
    assert one_read.status_code == 200, one_read.text
    listed = await chat.client.get("/api/notifications", headers=ada["auth"])
    read_at: dict[str, Any] = {n["id"]: n["readAt"] for n in listed.json()["items"]}
    assert read_at[str(first)] == read_at[str(other)], read_at  # both read by "read all"
    assert one_read.json()["readAt"] == read_at[str(first)]
