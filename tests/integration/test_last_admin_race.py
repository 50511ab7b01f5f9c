"""Two admins removing each other at the same moment: one wins, the other is refused.

The rule counts every active admin, so the Postgres run uses a throwaway database of its own
(the shared test database holds admins of other tests, which would let both changes pass).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.postgres.pool import create_pool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.users import Role, User
from whalli.domain.services.admin.update_user import UpdateUser, UpdateUserHandler
from whalli.ports.unit_of_work import UnitOfWork

from .conftest import UowFactory
from .entities import a_user


@pytest.fixture(params=["memory", "postgres"])
async def own_uow_factory(request: pytest.FixtureRequest) -> AsyncIterator[UowFactory]:
    if request.param == "memory":
        store = MemoryStore()
        yield lambda: InMemoryUnitOfWork(store)
        return
    url: str = request.getfixturevalue("own_database")
    async with asynccontextmanager(create_pool)(url, min_size=1, max_size=4) as pool:
        await pool.wait()
        yield lambda: PostgresUnitOfWork(pool)


class HeldUsers:
    """The users repository of one unit of work, holding its first read of an account until
    the other unit of work has read too: both transactions are open, and have seen two admins,
    before either goes on to change anything."""

    def __init__(self, users: Any, both_read: asyncio.Barrier) -> None:
        self._users, self._both_read, self._held = users, both_read, False

    async def get(self, user_id: UUID) -> User:
        user: User = await self._users.get(user_id)
        if not self._held:
            self._held = True
            await self._both_read.wait()
        return user

    def __getattr__(self, name: str) -> Any:
        return getattr(self._users, name)


def held(factory: UowFactory, both_read: asyncio.Barrier) -> UnitOfWork:
    uow = factory()
    uow.users = HeldUsers(uow.users, both_read)
    return uow


@pytest.mark.parametrize(
    "change", [{"role": Role.USER}, {"disabled": True}], ids=["demote", "disable"]
)
async def test_two_admins_removing_each_other_at_once_leave_one_admin(
    own_uow_factory: UowFactory, change: dict[str, Any]
) -> None:
    first, second = a_user(role=Role.ADMIN), a_user(role=Role.ADMIN)
    async with own_uow_factory() as uow:
        for admin in (first, second):
            await uow.users.add(admin)
        await uow.commit()
    both_read = asyncio.Barrier(2)

    async def remove(admin: User, other: User) -> User:
        handler = UpdateUserHandler(held(own_uow_factory, both_read), ManualClock())
        return await handler.execute(UpdateUser(admin_id=admin.id, user_id=other.id, **change))

    results = await asyncio.gather(
        remove(first, second), remove(second, first), return_exceptions=True
    )

    # the second to run sees the first's change: its caller is no longer an admin
    assert sorted(type(r).__name__ for r in results) == ["PermissionDenied", "User"], results
    async with own_uow_factory() as uow:
        assert await uow.users.count_admins() == 1
        stored = [await uow.users.get(a.id) for a in (first, second)]
    assert sum(u.is_admin for u in stored) == 1


class Ordered(HeldUsers):
    """Also orders the admin locks: waits for ``before`` (if any) before taking them, and sets
    ``taken`` once it holds them."""

    def __init__(
        self, users: Any, both_read: asyncio.Barrier, before: asyncio.Event | None,
        taken: asyncio.Event | None,
    ) -> None:  # fmt: skip
        super().__init__(users, both_read)
        self._before, self._taken = before, taken

    async def lock_admins(self) -> None:
        if self._before is not None:
            await self._before.wait()
        await self._users.lock_admins()
        if self._taken is not None:
            self._taken.set()


async def test_an_admin_demoted_while_waiting_cannot_remove_a_third_one(
    own_uow_factory: UowFactory,
) -> None:
    """A demotes B while B demotes C, and A takes the admin lock first: when B's change goes on,
    B is no longer an admin, so C stays one."""
    a, b, c = (a_user(role=Role.ADMIN) for _ in range(3))
    async with own_uow_factory() as uow:
        for admin in (a, b, c):
            await uow.users.add(admin)
        await uow.commit()
    both_read, a_locked = asyncio.Barrier(2), asyncio.Event()

    async def demote(
        admin: User, other: User, before: asyncio.Event | None, taken: asyncio.Event | None
    ) -> User:
        uow = own_uow_factory()
        uow.users = Ordered(uow.users, both_read, before, taken)
        command = UpdateUser(admin_id=admin.id, user_id=other.id, role=Role.USER)
        return await UpdateUserHandler(uow, ManualClock()).execute(command)

    results = await asyncio.gather(
        demote(a, b, None, a_locked), demote(b, c, a_locked, None), return_exceptions=True
    )

    assert [type(r).__name__ for r in results] == ["User", "PermissionDenied"], results
    async with own_uow_factory() as uow:
        admins = {u.id for u in [await uow.users.get(x.id) for x in (a, b, c)] if u.is_admin}
    assert admins == {a.id, c.id}
