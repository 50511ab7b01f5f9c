"""One transaction per use case, with the repositories that work inside it."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol, Self

from whalli.ports.api_keys import ApiKeyRepository
from whalli.ports.attachments import AttachmentRepository
from whalli.ports.chats import ChatRepository
from whalli.ports.feedback import FeedbackRepository
from whalli.ports.notifications import NotificationRepository
from whalli.ports.oauth_identities import OAuthIdentityRepository
from whalli.ports.presets import PresetRepository
from whalli.ports.projects import ProjectRepository
from whalli.ports.refresh_tokens import RefreshTokenRepository
from whalli.ports.search_subscriptions import SearchSubscriptionRepository
from whalli.ports.shares import ChatShareRepository
from whalli.ports.transcriptions import TranscriptionRepository
from whalli.ports.usage import UsageRepository
from whalli.ports.users import UserRepository


class UnitOfWork(Protocol):
    """``async with uow:`` opens one transaction; leaving without ``commit()`` rolls it back.

    Repositories never commit. An exception inside the block rolls back and propagates.
    A unit of work object may be entered again after it exits (a new transaction each time).
    Driver errors surface as ``ServiceUnavailable``.
    """

    users: UserRepository
    projects: ProjectRepository
    chats: ChatRepository
    attachments: AttachmentRepository
    transcriptions: TranscriptionRepository
    searches: SearchSubscriptionRepository
    notifications: NotificationRepository
    refresh_tokens: RefreshTokenRepository
    api_keys: ApiKeyRepository
    oauth_identities: OAuthIdentityRepository
    usage: UsageRepository
    feedback: FeedbackRepository
    shares: ChatShareRepository
    presets: PresetRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def read_only(self) -> AbstractAsyncContextManager[Self]:
        """``async with uow.read_only() as uow:`` for a use case that only reads, in one query.

        No transaction is opened (no BEGIN/ROLLBACK round trips): each statement sees what is
        committed when it runs, so two statements may see different states; use a normal block
        when reads must agree. Nothing may be written in it and ``commit`` raises
        ``RuntimeError`` (the in-memory unit of work also refuses writes). Otherwise as
        ``async with uow:`` (the same object may be entered again afterwards, either way).
        """
        ...

    def autocommit(self) -> AbstractAsyncContextManager[Self]:
        """``async with uow.autocommit() as uow:`` for a use case whose only write is one
        repository call that is atomic by itself (its port says so: one statement), made as
        the block's last step. No transaction is opened, so there are no BEGIN/COMMIT round
        trips: the write is durable once the call returns, and ``commit`` has nothing left to
        do. Reads before it see what is committed when each runs and do not share a
        transaction with the write: use a normal block when a read must hold until the write
        (a row lock, a count that must not change). A failed write leaves nothing behind.
        """
        ...

    async def commit(self) -> None:
        """Make the work of this block durable."""
        ...

    async def rollback(self) -> None:
        """Discard the work of this block (also what leaving without commit does)."""
        ...
