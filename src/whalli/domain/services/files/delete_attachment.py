"""Use case: delete a file (its record and its stored bytes)."""

from __future__ import annotations

import logging
from uuid import UUID

import msgspec

from whalli.domain.model.errors import WhalliError
from whalli.domain.services.files.access import require_attachment
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)


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
      row names (invisible, harmless), never a row whose bytes are gone;
    - once the row's deletion is committed the file is gone, and the delete succeeds: an object
      the storage fails to delete is logged (its key and the error's kind, nothing more) and
      left, as a project's deletion does; answering an error would tell the client the file is
      still there, and a retry would find nothing to delete.
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
        try:
            await self._blobs.delete(attachment.object_key)
        except Exception as e:
            # a domain error's message is worded without credentials or URLs; another's is not
            said = e.message if isinstance(e, WhalliError) else type(e).__name__
            log.warning(
                "A deleted file's object %s was not deleted: %s.", attachment.object_key, said
            )
