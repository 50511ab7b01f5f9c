"""One Postgres transaction per ``async with``, on a connection borrowed from the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whalli.adapters.postgres._base import translated
from whalli.adapters.postgres.api_keys import PostgresApiKeyRepository
from whalli.adapters.postgres.attachments import PostgresAttachmentRepository
from whalli.adapters.postgres.chats import PostgresChatRepository
from whalli.adapters.postgres.notifications import PostgresNotificationRepository
from whalli.adapters.postgres.oauth_identities import PostgresOAuthIdentityRepository
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.projects import PostgresProjectRepository
from whalli.adapters.postgres.refresh_tokens import PostgresRefreshTokenRepository
from whalli.adapters.postgres.search_subscriptions import PostgresSearchSubscriptionRepository
from whalli.adapters.postgres.transcriptions import PostgresTranscriptionRepository
from whalli.adapters.postgres.usage import PostgresUsageRepository
from whalli.adapters.postgres.users import PostgresUserRepository
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.unit_of_work import UnitOfWork


class PostgresUnitOfWork(UnitOfWork):
    """The connection is taken on enter and given back on exit, after a rollback of whatever was
    not committed. The connection is not in autocommit mode, so the first statement opens the
    transaction and ``commit`` ends it; work after a commit is a new transaction.

    After a repository raised because a statement failed, Postgres has aborted the transaction:
    leave the block (the work is rolled back) rather than continue in it.

    ``read_only()`` and ``autocommit()`` put the connection in autocommit mode for the block
    (client side: no round trip), so a single read costs one round trip instead of BEGIN, the
    read and ROLLBACK, and a write that is one statement (atomic by itself) one instead of
    BEGIN, the write and COMMIT. The connection goes back to the pool out of autocommit mode,
    or closed if that fails.
    """

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool
        self._conn: AsyncConnection[TupleRow] | None = None
        self._autocommit = False
        self._writes = False  # in autocommit mode: whether writes are allowed (else read-only)
        self.users = PostgresUserRepository(self._connection)
        self.projects = PostgresProjectRepository(self._connection)
        self.chats = PostgresChatRepository(self._connection)
        self.attachments = PostgresAttachmentRepository(self._connection)
        self.transcriptions = PostgresTranscriptionRepository(self._connection)
        self.searches = PostgresSearchSubscriptionRepository(self._connection)
        self.notifications = PostgresNotificationRepository(self._connection)
        self.refresh_tokens = PostgresRefreshTokenRepository(self._connection)
        self.api_keys = PostgresApiKeyRepository(self._connection)
        self.oauth_identities = PostgresOAuthIdentityRepository(self._connection)
        self.usage = PostgresUsageRepository(self._connection)

    def _connection(self) -> AsyncConnection[TupleRow]:
        if self._conn is None:
            raise RuntimeError("use the repositories inside `async with uow:`")
        return self._conn

    async def __aenter__(self) -> Self:
        await self._enter(autocommit=False)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit()

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[Self]:
        await self._enter(autocommit=True)
        try:
            yield self
        finally:
            await self._exit()

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Self]:
        await self._enter(autocommit=True)
        self._writes = True
        try:
            yield self
        finally:
            await self._exit()

    async def _enter(self, *, autocommit: bool) -> None:
        if self._conn is not None:
            raise RuntimeError("this unit of work is already in use")
        try:
            conn = await self._pool.getconn()
        except psycopg.Error as e:
            raise ServiceUnavailable("The database is unavailable.") from e
        if autocommit:
            try:
                await conn.set_autocommit(True)
            except psycopg.Error as e:
                await conn.close()
                await self._pool.putconn(conn)
                raise ServiceUnavailable("The database is unavailable.") from e
        self._conn, self._autocommit = conn, autocommit

    async def _exit(self) -> None:
        conn, self._conn = self._connection(), None
        autocommit, self._autocommit, self._writes = self._autocommit, False, False
        try:
            await conn.rollback()  # no round trip when no transaction is open
            if autocommit:
                await conn.set_autocommit(False)
        except psycopg.Error:
            # A broken connection: close it so the pool replaces it instead of reusing it.
            await conn.close()
        finally:
            if conn.autocommit:  # not restored (cancelled on the way): never hand it out again
                await conn.close()
            await self._pool.putconn(conn)

    async def commit(self) -> None:
        if self._autocommit:
            if self._writes:
                return  # every statement committed as it ran
            raise RuntimeError("a read-only unit of work has nothing to commit")
        with translated():
            await self._connection().commit()

    async def rollback(self) -> None:
        with translated():
            await self._connection().rollback()
