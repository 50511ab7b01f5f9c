"""Use case: delete a file (its record and its stored bytes)."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.services.files.access import require_attachment
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.unit_of_work import UnitOfWork


class DeleteAttachment(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    attachment_id: UUID


class DeleteAttachmentHandler:
    """Delete a file's row and its object.

    Rules:
    - owners and editors of the file's project may delete it; a viewer gets
      ``PermissionDenied``, anyone else ``AttachmentNotFound`` (as for an id that does not
      exist);
    - the row goes first (committed), then the object: a failure in between leaves an object no
      row names (invisible, harmless), never a row whose bytes are gone.
    """

    def __init__(self, uow: UnitOfWork, blobs: BlobStorage) -> None:
        self._uow = uow
        self._blobs = blobs

    async def execute(self, command: DeleteAttachment) -> None:
        async with self._uow as uow:
            attachment = await require_attachment(
                uow, command.attachment_id, command.user_id, "write"
            )
            await uow.attachments.delete(attachment.id)
            await uow.commit()
        await self._blobs.delete(attachment.object_key)
