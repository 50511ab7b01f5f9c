"""In-app notifications on the in-memory unit of work: the caller's own, newest first, pages,
the unread filter and count, marking one or all read."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.errors import InvalidInput, NotificationNotFound
from whalli.domain.model.notifications import Notification
from whalli.domain.model.users import User
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


async def _users_with_notifications(
    store: MemoryStore, clock: ManualClock, count: int
) -> tuple[User, User, list[Notification]]:
    ada = User.create(id=uuid.uuid4(), email="ada@example.com", now=clock.now())
    bob = User.create(id=uuid.uuid4(), email="bob@example.com", now=clock.now())
    made = []
    async with InMemoryUnitOfWork(store) as uow:
        await uow.users.add(ada)
        await uow.users.add(bob)
        for n in range(count):
            note = Notification(id=uuid.uuid4(), user_id=ada.id, kind="search_results",
                                title=f"{n} new results", created_at=clock.advance(1))  # fmt: skip
            await uow.notifications.add(note)
            made.append(note)
        await uow.notifications.add(
            Notification(
                id=uuid.uuid4(), user_id=bob.id, kind="k", title="bob's", created_at=clock.now()
            )
        )
        await uow.commit()
    return ada, bob, made


async def test_the_callers_notifications_page_newest_first_and_filter_the_unread() -> None:
    store, clock = MemoryStore(), ManualClock()
    ada, _, made = await _users_with_notifications(store, clock, 5)
    await MarkNotificationReadHandler(InMemoryUnitOfWork(store), clock).execute(
        MarkNotificationRead(user_id=ada.id, notification_id=made[3].id)
    )
    handler = ListNotificationsHandler(InMemoryUnitOfWork(store))

    first = await handler.execute(ListNotifications(user_id=ada.id, limit=3))
    rest = await handler.execute(
        ListNotifications(user_id=ada.id, limit=3, cursor=first.next_cursor)
    )
    unread = await handler.execute(ListNotifications(user_id=ada.id, unread_only=True))

    assert [n.id for n in first.items + rest.items] == [n.id for n in reversed(made)]
    assert rest.next_cursor is None
    assert [n.id for n in unread.items] == [made[4].id, made[2].id, made[1].id, made[0].id]
    with pytest.raises(InvalidInput, match="limit must be 1 to 100"):
        await handler.execute(ListNotifications(user_id=ada.id, limit=0))


async def test_marking_read_counts_down_and_keeps_the_first_time() -> None:
    store, clock = MemoryStore(), ManualClock()
    ada, _, made = await _users_with_notifications(store, clock, 3)
    count = CountUnreadNotificationsHandler(InMemoryUnitOfWork(store))
    mark = MarkNotificationReadHandler(InMemoryUnitOfWork(store), clock)

    read = await mark.execute(MarkNotificationRead(user_id=ada.id, notification_id=made[0].id))
    clock.advance(timedelta(minutes=1))
    again = await mark.execute(MarkNotificationRead(user_id=ada.id, notification_id=made[0].id))

    assert again.read_at == read.read_at is not None
    assert await count.execute(ada.id) == 2
    assert (
        await MarkAllNotificationsReadHandler(InMemoryUnitOfWork(store), clock).execute(ada.id) == 2
    )
    assert await count.execute(ada.id) == 0


async def test_another_users_notification_is_not_found_and_stays_unread() -> None:
    store, clock = MemoryStore(), ManualClock()
    ada, bob, made = await _users_with_notifications(store, clock, 1)
    mark = MarkNotificationReadHandler(InMemoryUnitOfWork(store), clock)

    with pytest.raises(NotificationNotFound, match="Notification not found"):
        await mark.execute(MarkNotificationRead(user_id=bob.id, notification_id=made[0].id))
    assert (
        await MarkAllNotificationsReadHandler(InMemoryUnitOfWork(store), clock).execute(bob.id) == 1
    )

    assert await CountUnreadNotificationsHandler(InMemoryUnitOfWork(store)).execute(ada.id) == 1
