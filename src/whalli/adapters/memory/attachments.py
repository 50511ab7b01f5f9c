"""Attachment records (``get_for_update`` holds a row lock), in memory."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository, check_limit
from whalli.domain.model.attachments import Attachment, AttachmentStatus
from whalli.domain.model.errors import AttachmentNotFound
from whalli.ports.attachments import AttachmentRepository


class InMemoryAttachmentRepository(MemoryRepository, AttachmentRepository):
    async def add(self, attachment: Attachment) -> None:
        self._tx().insert("attachments", attachment.id, attachment)

    async def get(self, attachment_id: UUID) -> Attachment:
        attachment: Attachment = self._tx().get("attachments", attachment_id, AttachmentNotFound)
        return attachment

    async def get_for_update(self, attachment_id: UUID) -> Attachment:
        await self._tx().lock("attachments", attachment_id)
        return await self.get(attachment_id)

    async def update(self, attachment: Attachment) -> None:
        self._tx().replace("attachments", attachment.id, attachment, AttachmentNotFound)

    async def delete(self, attachment_id: UUID) -> None:
        self._tx().delete("attachments", attachment_id, AttachmentNotFound)

    async def list_for_project(self, project_id: UUID, *, limit: int = 100) -> list[Attachment]:
        check_limit(limit)
        found: list[Attachment] = self._tx().select(
            "attachments", lambda a: a.project_id == project_id
        )
        return sorted(found, key=lambda a: (a.created_at, a.id), reverse=True)[:limit]

    async def list_stale(
        self, status: AttachmentStatus, before: datetime, *, limit: int = 100
    ) -> list[Attachment]:
        check_limit(limit)
        found: list[Attachment] = self._tx().select(
            "attachments", lambda a: a.status is status and a.updated_at < before
        )
        return sorted(found, key=lambda a: (a.updated_at, a.id))[:limit]
