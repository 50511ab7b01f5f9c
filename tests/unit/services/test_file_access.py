"""Reading, downloading and deleting files on the in-memory adapters: members read, writers
delete, anyone else is told the file does not exist."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from tests.unit.services.test_upload_attachment import PNG, Files
from whalli.domain.model.attachments import ExtractionResult
from whalli.domain.model.errors import AttachmentNotFound, PermissionDenied, ProjectNotFound
from whalli.domain.model.projects import MemberRole
from whalli.domain.services.files.delete_attachment import (
    DeleteAttachment,
    DeleteAttachmentHandler,
)
from whalli.domain.services.files.get_attachment import GetAttachment, GetAttachmentHandler
from whalli.domain.services.files.list_attachments import (
    ListAttachments,
    ListAttachmentsHandler,
)
from whalli.domain.services.files.open_attachment_content import (
    OpenAttachmentContent,
    OpenAttachmentContentHandler,
)


async def test_a_viewer_reads_and_downloads_but_cannot_delete() -> None:
    files = Files()
    alice, bob = await files.user("alice"), await files.user("bob")
    project = await files.personal(alice)
    await files.share(project, bob, MemberRole.VIEWER)
    attachment = await files.upload(alice, PNG)

    listed = await ListAttachmentsHandler(files.uow()).execute(
        ListAttachments(user_id=bob.id, project_id=project.id)
    )
    assert [a.id for a in listed] == [attachment.id]
    opened = await OpenAttachmentContentHandler(files.uow(), files.blobs).execute(
        OpenAttachmentContent(user_id=bob.id, attachment_id=attachment.id)
    )
    assert opened.chunks is not None
    assert b"".join([c async for c in opened.chunks]) == PNG
    presigned = await OpenAttachmentContentHandler(files.uow(), files.blobs, 60).execute(
        OpenAttachmentContent(user_id=bob.id, attachment_id=attachment.id, presigned=True)
    )
    assert presigned.url is not None
    assert "expires=60" in presigned.url
    with pytest.raises(PermissionDenied, match="write access"):
        await DeleteAttachmentHandler(files.uow(), files.blobs).execute(
            DeleteAttachment(user_id=bob.id, attachment_id=attachment.id)
        )
    assert [r.id for r in await files.rows()] == [attachment.id]


async def test_a_stranger_is_told_the_file_does_not_exist() -> None:
    files = Files()
    alice, carol = await files.user("alice"), await files.user("carol")
    attachment = await files.upload(alice, PNG)
    for attachment_id in (attachment.id, uuid4()):
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await GetAttachmentHandler(files.uow()).execute(
                GetAttachment(user_id=carol.id, attachment_id=attachment_id)
            )
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await OpenAttachmentContentHandler(files.uow(), files.blobs).execute(
                OpenAttachmentContent(user_id=carol.id, attachment_id=attachment_id)
            )
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await DeleteAttachmentHandler(files.uow(), files.blobs).execute(
                DeleteAttachment(user_id=carol.id, attachment_id=attachment_id)
            )
    with pytest.raises(ProjectNotFound, match="not found"):
        await ListAttachmentsHandler(files.uow()).execute(
            ListAttachments(user_id=carol.id, project_id=attachment.project_id)
        )
    own = await ListAttachmentsHandler(files.uow()).execute(ListAttachments(user_id=carol.id))
    assert own == []


async def test_the_preview_is_the_start_of_the_extracted_text() -> None:
    files = Files()
    alice = await files.user("alice")
    attachment = await files.upload(alice, PNG)
    async with files.uow() as uow:
        stored = await uow.attachments.get(attachment.id)
        stored.start_processing(files.clock.advance(timedelta(seconds=1)))
        stored.complete(
            ExtractionResult(text="word " * 100, method="ocr", page_count=1), files.clock.now()
        )
        await uow.attachments.update(stored)
        await uow.commit()
    command = GetAttachment(user_id=alice.id, attachment_id=attachment.id)
    view = await GetAttachmentHandler(files.uow(), preview_chars=20).execute(command)
    assert view.text_preview == "word word word word "
    assert view.truncated is True
    assert view.page_count == 1
    assert view.attachment.status == "done"


async def test_deleting_removes_the_row_and_the_object() -> None:
    files = Files()
    alice = await files.user("alice")
    attachment = await files.upload(alice, PNG)
    await DeleteAttachmentHandler(files.uow(), files.blobs).execute(
        DeleteAttachment(user_id=alice.id, attachment_id=attachment.id)
    )
    assert await files.rows() == []
    assert files.blobs._objects == {}
