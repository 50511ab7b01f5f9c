"""Contract of NotificationRepository, in memory and on Postgres."""

from __future__ import annotations

import asyncio

import pytest

from whalli.domain.model.errors import InvalidInput, NotificationNotFound, UserNotFound

from ..conftest import UowFactory
from ..entities import a_notification, a_user, at, committed_world


async def test_a_notification_reads_back_equal_and_can_be_marked_read(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    notification = a_notification(world.user)
    async with uow_factory() as uow:
        await uow.notifications.add(notification)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.notifications.get(notification.id) == notification
        notification.mark_read(at(5))
        await uow.notifications.update(notification)
        await uow.commit()

    async with uow_factory() as uow:
        stored = await uow.notifications.get(notification.id)
    assert stored == notification
    assert stored.is_read


async def test_an_unknown_notification_is_not_found(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    ghost = a_notification(world.user)
    async with uow_factory() as uow:
        with pytest.raises(NotificationNotFound, match="Notification not found"):
            await uow.notifications.get(ghost.id)
        with pytest.raises(NotificationNotFound, match="Notification not found"):
            await uow.notifications.get_for_update(ghost.id)
        with pytest.raises(NotificationNotFound, match="Notification not found"):
            await uow.notifications.update(ghost)


async def test_a_notification_needs_an_existing_user(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.notifications.add(a_notification(a_user()))


async def test_notifications_are_listed_newest_first_optionally_unread_only(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    other = a_user()
    old, read, new = (a_notification(world.user, now=at(s)) for s in (1, 2, 3))
    read.mark_read(at(4))
    async with uow_factory() as uow:
        await uow.users.add(other)
        await uow.notifications.add(a_notification(other))
        for notification in (old, read, new):
            await uow.notifications.add(notification)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.notifications.list_for_user(world.user.id) == [new, read, old]
        assert await uow.notifications.list_for_user(world.user.id, unread_only=True) == [new, old]
        assert await uow.notifications.list_for_user(world.user.id, limit=1) == [new]
        with pytest.raises(InvalidInput, match="limit must not be negative"):
            await uow.notifications.list_for_user(world.user.id, limit=-1)


async def test_get_for_update_lets_one_unit_of_work_at_a_time_mark_a_notification_read(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    notification = a_notification(world.user)
    async with uow_factory() as uow:
        await uow.notifications.add(notification)
        await uow.commit()
    marked: list[int] = []
    all_in = asyncio.Barrier(5)  # each in a transaction of its own before any locks

    async def mark(second: int) -> None:
        async with uow_factory() as uow:
            assert not (await uow.notifications.get(notification.id)).is_read
            await all_in.wait()
            locked = await uow.notifications.get_for_update(notification.id)
            await asyncio.sleep(0)  # let the others reach the lock
            if not locked.is_read:
                marked.append(second)
                locked.mark_read(at(second))
                await uow.notifications.update(locked)
            await uow.commit()

    await asyncio.gather(*(mark(s) for s in range(5, 10)))

    async with uow_factory() as uow:
        stored = await uow.notifications.get(notification.id)
        await uow.notifications.get_for_update(notification.id)
        await uow.notifications.get_for_update(notification.id)  # the holder may lock again
    assert len(marked) == 1
    assert stored.read_at == at(marked[0])
