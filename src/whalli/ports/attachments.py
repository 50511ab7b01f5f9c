"""Storage of attachment records (the bytes live in blob storage)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.attachments import Attachment, AttachmentStatus


class AttachmentRepository(Protocol):
    async def add(self, attachment: Attachment) -> None: ...

    async def get(self, attachment_id: UUID) -> Attachment:
        """Raises ``AttachmentNotFound``."""
        ...

    async def get_many(self, attachment_ids: Collection[UUID]) -> dict[UUID, Attachment]:
        """Those of ``attachment_ids`` that exist, by id (one read; the missing are left out)."""
        ...

    async def get_many_excerpts(
        self, attachment_ids: Collection[UUID], max_chars: int
    ) -> dict[UUID, Attachment]:
        """``get_many``, each one's ``extraction`` (when it has one) an ``ExtractionExcerpt``:
        only the first ``max_chars`` characters of its text, cut by the store, with the whole
        text's length and whether it is blank. What a prompt reads of its files: it never uses
        more than its cap of a file (``ContextLimits.attachment_char_cap``), and a file's text
        may be a million characters. ``update`` and ``add`` refuse an attachment read so."""
        ...

    async def get_for_update(self, attachment_id: UUID) -> Attachment:
        """Like ``get`` but locks the row until the unit of work ends (one worker at a time)."""
        ...

    async def update(self, attachment: Attachment) -> None:
        """Raises ``AttachmentNotFound``."""
        ...

    async def delete(self, attachment_id: UUID) -> None:
        """Raises ``AttachmentNotFound``."""
        ...

    async def list_for_project(
        self, project_id: UUID, *, limit: int = 100, before: tuple[datetime, UUID] | None = None
    ) -> list[Attachment]:
        """Newest first (by ``created_at``, then id); ``before``: only those after the
        (``created_at``, id) of the last one seen, the next page."""
        ...

    async def object_keys_for_project(self, project_id: UUID) -> list[str]:
        """The stored objects' keys of every file of the project (all of them: to delete)."""
        ...

    async def object_keys_for_user(self, user_id: UUID) -> list[str]:
        """The stored objects' keys of every file the user uploaded, in any project (all of
        them: to delete)."""
        ...

    async def claim_stale(
        self, status: AttachmentStatus, before: datetime, now: datetime, *, limit: int = 100
    ) -> list[Attachment]:
        """Attachments in ``status`` neither updated nor requeued since before ``before``, least
        recently touched first, each with ``requeued_at`` set to ``now`` in the same statement
        (what a sweeper queues again): no call returns them again until ``before`` passes
        ``now``. Rows another unit of work holds locked are skipped, so two sweepers at once
        never claim the same attachment; the claimed rows stay locked until the unit of work
        ends."""
        ...
