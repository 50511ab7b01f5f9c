"""The in-memory unit of work: the same transaction semantics as Postgres, without a server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

from whalli.adapters.memory.api_keys import InMemoryApiKeyRepository
from whalli.adapters.memory.attachments import InMemoryAttachmentRepository
from whalli.adapters.memory.chats import InMemoryChatRepository
from whalli.adapters.memory.feedback import InMemoryFeedbackRepository
from whalli.adapters.memory.notifications import InMemoryNotificationRepository
from whalli.adapters.memory.oauth_identities import InMemoryOAuthIdentityRepository
from whalli.adapters.memory.presets import InMemoryPresetRepository
from whalli.adapters.memory.projects import InMemoryProjectRepository
from whalli.adapters.memory.refresh_tokens import InMemoryRefreshTokenRepository
from whalli.adapters.memory.search_subscriptions import InMemorySearchSubscriptionRepository
from whalli.adapters.memory.shares import InMemoryChatShareRepository
from whalli.adapters.memory.store import MemoryStore, MemoryTransaction
from whalli.adapters.memory.transcriptions import InMemoryTranscriptionRepository
from whalli.adapters.memory.usage import InMemoryUsageRepository
from whalli.adapters.memory.users import InMemoryUserRepository
from whalli.ports.unit_of_work import UnitOfWork


class InMemoryUnitOfWork(UnitOfWork):
    """Works on copies of the store's rows; ``commit`` publishes the changed rows.

    Leaving without commit, or with an exception, discards the work (rollback by default).
    Row locks taken by ``get_for_update`` and ``find_by_hash_for_update`` are held until commit
    or rollback, as in Postgres. In ``read_only()`` writes, row locks and commit raise
    ``RuntimeError``, so a use case that writes there fails in its unit tests.
    """

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._tx: MemoryTransaction | None = None
        self.users = InMemoryUserRepository(self._transaction)
        self.projects = InMemoryProjectRepository(self._transaction)
        self.chats = InMemoryChatRepository(self._transaction)
        self.attachments = InMemoryAttachmentRepository(self._transaction)
        self.transcriptions = InMemoryTranscriptionRepository(self._transaction)
        self.searches = InMemorySearchSubscriptionRepository(self._transaction)
        self.notifications = InMemoryNotificationRepository(self._transaction)
        self.refresh_tokens = InMemoryRefreshTokenRepository(self._transaction)
        self.api_keys = InMemoryApiKeyRepository(self._transaction)
        self.oauth_identities = InMemoryOAuthIdentityRepository(self._transaction)
        self.usage = InMemoryUsageRepository(self._transaction)
        self.feedback = InMemoryFeedbackRepository(self._transaction)
        self.shares = InMemoryChatShareRepository(self._transaction)
        self.presets = InMemoryPresetRepository(self._transaction)

    def _transaction(self) -> MemoryTransaction:
        if self._tx is None:
            raise RuntimeError("use the repositories inside `async with uow:`")
        return self._tx

    async def __aenter__(self) -> Self:
        self._enter(read_only=False)
        return self

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[Self]:
        self._enter(read_only=True)
        try:
            yield self
        finally:
            tx, self._tx = self._transaction(), None
            tx.rollback()

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Self]:
        """The block's writes are published as it ends without an exception (and by
        ``commit``): the same as Postgres for the one atomic write the port allows here."""
        self._enter(read_only=False)
        try:
            yield self
        except BaseException:
            tx, self._tx = self._transaction(), None
            tx.rollback()
            raise
        tx, self._tx = self._transaction(), None
        tx.commit()

    def _enter(self, *, read_only: bool) -> None:
        if self._tx is not None:
            raise RuntimeError("this unit of work is already in use")
        self._tx = MemoryTransaction(self._store, read_only=read_only)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tx, self._tx = self._transaction(), None
        tx.rollback()

    async def commit(self) -> None:
        self._transaction().commit()

    async def rollback(self) -> None:
        self._transaction().rollback()
