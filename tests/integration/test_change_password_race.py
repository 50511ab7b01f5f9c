"""Two password changes of one account at the same moment, both with the right current password:
the first wins, the second is refused, and only the first's new session is left.

Both check the current password (outside the transaction) before either changes anything, then
the first re-reads the account in its transaction; the second re-reads only once the first has,
and the first commits only once the second has read the account or is waiting for the first's
lock. Without the lock the second reads the old hash, so both changes go through. The Postgres
run uses a throwaway database of its own, where any backend waiting for a lock is the second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.password_hasher import FastPasswordHasher
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.passwords.common_list import CommonPasswordList
from whalli.adapters.postgres.pool import create_pool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.adapters.system.ids import UuidGenerator
from whalli.domain.model.tokens import hash_refresh_secret
from whalli.domain.model.users import User
from whalli.domain.services.auth.change_password import ChangePassword, ChangePasswordHandler
from whalli.domain.services.auth.sessions import TokenPair

from .conftest import UowFactory
from .entities import NOW, a_refresh_token, a_user

PASSWORD = "correct horse battery"
FIRST, SECOND = "the first new passphrase", "the second new passphrase"
_WAITING = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)

Probe = Callable[[], Awaitable[bool]]


@pytest.fixture(params=["memory", "postgres"])
async def race(request: pytest.FixtureRequest) -> AsyncIterator[tuple[UowFactory, Probe]]:
    """Units of work on a store or database of their own, and whether a unit of work is
    waiting for a lock there."""
    if request.param == "memory":
        store = MemoryStore()

        async def no_probe() -> bool:
            # In memory a read that takes no lock returns without yielding: when the first
            # resumes, the second either has read the account or is waiting for the lock.
            return True

        yield lambda: InMemoryUnitOfWork(store), no_probe
        return
    url: str = request.getfixturevalue("own_database")
    async with asynccontextmanager(create_pool)(url, min_size=1, max_size=4) as pool:
        await pool.wait()

        async def someone_waits() -> bool:
            async with pool.connection() as conn:  # a transaction per look: fresh statistics
                row = await (await conn.execute(_WAITING)).fetchone()
            return row is not None and row[0] > 0

        yield lambda: PostgresUnitOfWork(pool), someone_waits


class Steps:
    """The order of the two changes (see the module docstring)."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.both_checked = asyncio.Barrier(2)
        self.first_reread, self.second_rereading, self.second_reread = (
            asyncio.Event(),
            asyncio.Event(),
            asyncio.Event(),
        )


class OrderedUsers:
    """The users repository of one change: its first read (the password check) waits for the
    other change's; its re-read in the transaction (``get_for_update``, or a second ``get``)
    takes its turn."""

    def __init__(self, users: Any, steps: Steps, *, first: bool) -> None:
        self._users, self._steps, self._first, self._checked = users, steps, first, False

    async def get(self, user_id: UUID) -> User:
        if self._checked:
            return await self._reread(self._users.get, user_id)
        user: User = await self._users.get(user_id)
        self._checked = True
        await self._steps.both_checked.wait()
        return user

    async def get_for_update(self, user_id: UUID) -> User:
        return await self._reread(self._users.get_for_update, user_id)

    async def _reread(self, read: Callable[[UUID], Awaitable[User]], user_id: UUID) -> User:
        steps = self._steps
        if self._first:
            user = await read(user_id)
            steps.first_reread.set()
            await steps.second_rereading.wait()
            while not steps.second_reread.is_set() and not await steps.probe():
                await asyncio.sleep(0.01)
            return user  # goes on to commit
        await steps.first_reread.wait()
        steps.second_rereading.set()
        user = await read(user_id)
        steps.second_reread.set()
        return user

    def __getattr__(self, name: str) -> Any:
        return getattr(self._users, name)


async def test_two_concurrent_password_changes_let_the_first_through_and_refuse_the_second(
    race: tuple[UowFactory, Probe],
) -> None:
    factory, probe = race
    hasher, clock, ids = FastPasswordHasher(), ManualClock(NOW), UuidGenerator()
    user = a_user(password_hash=hasher.hash(PASSWORD))
    old_session = a_refresh_token(user)
    async with factory() as uow:
        await uow.users.add(user)
        await uow.refresh_tokens.add(old_session)
        await uow.commit()
    steps = Steps(probe)

    async def change(new_password: str, *, first: bool) -> TokenPair:
        uow = factory()
        uow.users = OrderedUsers(uow.users, steps, first=first)
        issuer = JwtAccessTokenIssuer(
            secret="s" * 32, issuer="whalli", audience="whalli-api", clock=clock
        )
        handler = ChangePasswordHandler(
            uow, hasher=hasher, screen=CommonPasswordList(), issuer=issuer, clock=clock,
            ids=ids, refresh_ttl=timedelta(days=1),
        )  # fmt: skip
        command = ChangePassword(
            user_id=user.id, current_password=PASSWORD, new_password=new_password
        )
        return await handler.execute(command)

    results = await asyncio.gather(
        change(FIRST, first=True), change(SECOND, first=False), return_exceptions=True
    )

    assert [type(r).__name__ for r in results] == ["TokenPair", "InvalidCredentials"], results
    winner = results[0]
    assert isinstance(winner, TokenPair)
    async with factory() as uow:
        stored = await uow.users.get(user.id)
        token = await uow.refresh_tokens.find_by_hash_for_update(
            hash_refresh_secret(winner.refresh_token)
        )
        assert token is not None
        assert await uow.refresh_tokens.family_is_active(token.family_id, NOW)
        assert not await uow.refresh_tokens.family_is_active(old_session.family_id, NOW)
        # the winner's session is the only one left: the second opened none
        assert await uow.refresh_tokens.revoke_all_for_user(user.id, NOW) == 1
    assert hasher.verify(stored.password_hash or "", FIRST)
