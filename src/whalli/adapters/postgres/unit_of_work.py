"""One Postgres transaction per ``async with``, on a connection borrowed from the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Generic, Self, TypeVar, overload

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whalli.adapters.postgres._base import ConnectionGetter, translated
from whalli.adapters.postgres.api_keys import PostgresApiKeyRepository
from whalli.adapters.postgres.attachments import PostgresAttachmentRepository
from whalli.adapters.postgres.chats import PostgresChatRepository
from whalli.adapters.postgres.feedback import PostgresFeedbackRepository
from whalli.adapters.postgres.notifications import PostgresNotificationRepository
from whalli.adapters.postgres.oauth_identities import PostgresOAuthIdentityRepository
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.presets import PostgresPresetRepository
from whalli.adapters.postgres.projects import PostgresProjectRepository
from whalli.adapters.postgres.refresh_tokens import PostgresRefreshTokenRepository
from whalli.adapters.postgres.search_subscriptions import PostgresSearchSubscriptionRepository
from whalli.adapters.postgres.shares import PostgresChatShareRepository
from whalli.adapters.postgres.transcriptions import PostgresTranscriptionRepository
from whalli.adapters.postgres.usage import PostgresUsageRepository
from whalli.adapters.postgres.users import PostgresUserRepository
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.unit_of_work import UnitOfWork

R = TypeVar("R")


class _Repository(Generic[R]):
    """A repository of the unit of work, made on first use and then kept in the instance (as
    ``functools.cached_property`` would, which mypy takes for read-only where the port's
    attributes are not): a use case touches one or two of them, and a reply being
    generated holds its unit of work for as long as it streams."""

    def __init__(self, make: Callable[[ConnectionGetter], R]) -> None:
        self._make = make
        self._name = ""

    def __set_name__(self, owner: type[PostgresUnitOfWork], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, uow: None, owner: type[PostgresUnitOfWork]) -> Self: ...
    @overload
    def __get__(self, uow: PostgresUnitOfWork, owner: type[PostgresUnitOfWork]) -> R: ...
    def __get__(self, uow: PostgresUnitOfWork | None, owner: type[PostgresUnitOfWork]) -> R | Self:
        if uow is None:
            return self
        repository = uow.__dict__[self._name] = self._make(uow._connection)
        return repository


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

    users = _Repository(PostgresUserRepository)
    projects = _Repository(PostgresProjectRepository)
    chats = _Repository(PostgresChatRepository)
    attachments = _Repository(PostgresAttachmentRepository)
    transcriptions = _Repository(PostgresTranscriptionRepository)
    searches = _Repository(PostgresSearchSubscriptionRepository)
    notifications = _Repository(PostgresNotificationRepository)
    refresh_tokens = _Repository(PostgresRefreshTokenRepository)
    api_keys = _Repository(PostgresApiKeyRepository)
    oauth_identities = _Repository(PostgresOAuthIdentityRepository)
    usage = _Repository(PostgresUsageRepository)
    feedback = _Repository(PostgresFeedbackRepository)
    shares = _Repository(PostgresChatShareRepository)
    presets = _Repository(PostgresPresetRepository)

    def __init__(self, pool: PostgresPool) -> None:
        self._pool = pool
        self._conn: AsyncConnection[TupleRow] | None = None
        self._autocommit = False
        self._writes = False  # in autocommit mode: whether writes are allowed (else read-only)

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
