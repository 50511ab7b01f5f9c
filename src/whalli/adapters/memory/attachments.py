"""Attachment records (``get_for_update`` holds a row lock), in memory."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

import msgspec

from whalli.adapters.memory._repository import MemoryRepository, check_limit
from whalli.domain.model.attachments import Attachment, AttachmentStatus, ExtractionExcerpt
from whalli.domain.model.errors import AttachmentNotFound
from whalli.ports.attachments import AttachmentRepository


class InMemoryAttachmentRepository(MemoryRepository, AttachmentRepository):
    async def add(self, attachment: Attachment) -> None:
        attachment.check_storable()
        self._tx().insert("attachments", attachment.id, attachment)

    async def get(self, attachment_id: UUID) -> Attachment:
        attachment: Attachment = self._tx().get("attachments", attachment_id, AttachmentNotFound)
        return attachment

    async def get_many(self, attachment_ids: Collection[UUID]) -> dict[UUID, Attachment]:
        found: dict[UUID, Attachment] = {}
        for attachment_id in attachment_ids:
            try:
                found[attachment_id] = await self.get(attachment_id)
            except AttachmentNotFound:
                continue
        return found

    async def get_many_excerpts(
        self, attachment_ids: Collection[UUID], max_chars: int
    ) -> dict[UUID, Attachment]:
        found = await self.get_many(attachment_ids)
        return {
            i: a
            if a.extraction is None
            else msgspec.structs.replace(
                a, extraction=ExtractionExcerpt.of(a.extraction, max_chars)
            )
            for i, a in found.items()
        }

    async def get_for_update(self, attachment_id: UUID) -> Attachment:
        await self._tx().lock("attachments", attachment_id)
        return await self.get(attachment_id)

    async def update(self, attachment: Attachment) -> None:
        attachment.check_storable()
        self._tx().replace("attachments", attachment.id, attachment, AttachmentNotFound)

    async def delete(self, attachment_id: UUID) -> None:
        self._tx().delete("attachments", attachment_id, AttachmentNotFound)

    async def list_for_project(
        self, project_id: UUID, *, limit: int = 100, before: tuple[datetime, UUID] | None = None
    ) -> list[Attachment]:
        check_limit(limit)
        found: list[Attachment] = self._tx().select(
            "attachments",
            lambda a: (
                a.project_id == project_id and (before is None or (a.created_at, a.id) < before)
            ),
        )
        return sorted(found, key=lambda a: (a.created_at, a.id), reverse=True)[:limit]

    async def object_keys_for_project(self, project_id: UUID) -> list[str]:
        found: list[Attachment] = self._tx().select(
            "attachments", lambda a: a.project_id == project_id
        )
        return [a.object_key for a in found]

    async def object_keys_for_user(self, user_id: UUID) -> list[str]:
        found: list[Attachment] = self._tx().select("attachments", lambda a: a.user_id == user_id)
        return [a.object_key for a in found]

    async def claim_stale(
        self, status: AttachmentStatus, before: datetime, now: datetime, *, limit: int = 100
    ) -> list[Attachment]:
        check_limit(limit)
        tx = self._tx()
        found: list[Attachment] = tx.select("attachments", lambda a: _is_stale(a, status, before))
        claimed: list[Attachment] = []
        for stale in sorted(found, key=lambda a: (_touched(a), a.id)):
            if len(claimed) == limit:
                break
            if not await tx.try_lock("attachments", stale.id):
                continue
            latest: Attachment | None = tx.find("attachments", stale.id)  # as the lock read it
            if latest is None or not _is_stale(latest, status, before):
                continue
            latest.requeued_at = now
            tx.replace("attachments", latest.id, latest, AttachmentNotFound)
            claimed.append(latest)
        return claimed


def _touched(attachment: Attachment) -> datetime:
    """As Postgres ``GREATEST(updated_at, requeued_at)``, which ignores a null."""
    return max(attachment.updated_at, attachment.requeued_at or attachment.updated_at)


def _is_stale(attachment: Attachment, status: AttachmentStatus, before: datetime) -> bool:
    return attachment.status is status and _touched(attachment) < before
