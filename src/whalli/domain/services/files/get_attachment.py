"""Use case: one file's metadata, extraction status and the start of its text."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.attachments import Attachment
from whalli.domain.model.base import Value
from whalli.domain.services.files.access import require_attachment
from whalli.ports.unit_of_work import UnitOfWork

DEFAULT_PREVIEW_CHARS = 2000


class GetAttachment(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    attachment_id: UUID


class AttachmentView(Value, frozen=True, kw_only=True):
    attachment: Attachment
    text_preview: str | None  # None until the extraction is done
    page_count: int | None
    truncated: bool  # the stored text was capped, or the preview cut it short


class GetAttachmentHandler:
    """Return a file with its status, failure reason and the first ``preview_chars``
    characters of its extracted text.

    Rules:
    - any member of the file's project may read it; anyone else gets ``AttachmentNotFound``,
      exactly as for an id that does not exist (see ``files.access``);
    - it only reads, without a transaction (the file, then the caller's membership as it is
      then): cheap enough to be polled (``watch_attachment``).
    """

    def __init__(self, uow: UnitOfWork, preview_chars: int = DEFAULT_PREVIEW_CHARS) -> None:
        self._uow = uow
        self._preview_chars = preview_chars

    async def execute(self, command: GetAttachment) -> AttachmentView:
        async with self._uow.read_only() as uow:
            attachment = await require_attachment(
                uow, command.attachment_id, command.user_id, "read"
            )
        extraction = attachment.extraction
        if extraction is None:
            return AttachmentView(
                attachment=attachment, text_preview=None, page_count=None, truncated=False
            )
        cut = len(extraction.text) > self._preview_chars
        return AttachmentView(
            attachment=attachment,
            text_preview=extraction.text[: self._preview_chars],
            page_count=extraction.page_count,
            truncated=extraction.truncated or cut,
        )
