"""Use case: the bytes of a file for download, or a short-lived URL to fetch them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import msgspec

from whalli.domain.model.attachments import Attachment
from whalli.domain.model.base import Value
from whalli.domain.services.files.access import require_attachment
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.unit_of_work import UnitOfWork

DEFAULT_URL_TTL_SECONDS = 300


class OpenAttachmentContent(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    attachment_id: UUID
    presigned: bool = False  # a URL instead of the bytes


class AttachmentContent(Value, frozen=True, kw_only=True):
    attachment: Attachment
    chunks: AsyncIterator[bytes] | None = None  # set unless a URL was asked for
    url: str | None = None  # a presigned GET, valid for ``url_ttl_seconds``


class OpenAttachmentContentHandler:
    """Open a file's content for a member of its project.

    Rules:
    - any member may download; anyone else gets ``AttachmentNotFound`` (see ``files.access``);
    - the bytes are streamed from blob storage (never held whole in memory), with the stored
      metadata (sanitized name, detected type) for the response headers;
    - a presigned URL lives ``url_ttl_seconds`` (default five minutes);
    - no transaction stays open during the download.
    """

    def __init__(
        self, uow: UnitOfWork, blobs: BlobStorage, url_ttl_seconds: int = DEFAULT_URL_TTL_SECONDS
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._url_ttl_seconds = url_ttl_seconds

    async def execute(self, command: OpenAttachmentContent) -> AttachmentContent:
        async with self._uow as uow:
            attachment = await require_attachment(
                uow, command.attachment_id, command.user_id, "read"
            )
        key = attachment.object_key
        if command.presigned:
            url = await self._blobs.presigned_url(key, self._url_ttl_seconds)
            return AttachmentContent(attachment=attachment, url=url)
        return AttachmentContent(attachment=attachment, chunks=await self._blobs.get(key))
