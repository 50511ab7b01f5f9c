"""Reading, downloading and deleting files on the in-memory adapters: members read, writers
delete, anyone else is told the file does not exist."""

from __future__ import annotations

import logging
from datetime import timedelta
from uuid import uuid4

import pytest

from tests.unit.services.test_upload_attachment import PNG, Files
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.domain.model.attachments import ExtractionResult
from whalli.domain.model.errors import (
    AttachmentNotFound,
    InvalidInput,
    PermissionDenied,
    ProjectNotFound,
    ServiceUnavailable,
)
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
    assert [a.id for a in listed.items] == [attachment.id]
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
    assert (own.items, own.next_cursor) == ([], None)


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


async def test_a_long_list_of_files_is_read_a_page_at_a_time_newest_first() -> None:
    files = Files()
    alice = await files.user("alice")
    uploaded = []
    for n in range(5):
        files.clock.advance(timedelta(seconds=1 if n != 3 else 0))  # two at the same instant
        uploaded.append(await files.upload(alice, PNG, name=f"{n}.png"))
    newest_first = sorted(uploaded, key=lambda a: (a.created_at, a.id), reverse=True)
    listing = ListAttachmentsHandler(files.uow())
    seen, cursor, pages = [], None, 0
    while True:
        page = await listing.execute(ListAttachments(user_id=alice.id, limit=2, cursor=cursor))
        seen += [a.id for a in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [a.id for a in newest_first]
    assert pages == 3
    exact = await listing.execute(ListAttachments(user_id=alice.id, limit=5))
    assert exact.next_cursor is None  # no empty page after a full one
    with pytest.raises(InvalidInput, match="cursor is not valid"):
        await listing.execute(ListAttachments(user_id=alice.id, cursor="nope"))


class UndeletableBlobs(InMemoryBlobStorage):
    async def delete(self, key: str) -> None:
        raise ServiceUnavailable("s3: connection failed")


async def test_a_delete_whose_object_stays_still_deletes_the_file_and_logs_the_object(
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = Files()
    files.blobs = UndeletableBlobs()
    alice = await files.user("alice")
    attachment = await files.upload(alice, PNG)
    with caplog.at_level(logging.WARNING):
        await DeleteAttachmentHandler(files.uow(), files.blobs).execute(
            DeleteAttachment(user_id=alice.id, attachment_id=attachment.id)
        )
    assert await files.rows() == []
    assert list(files.blobs._objects) == [attachment.object_key]  # left, and logged
    [record] = [r for r in caplog.records if r.name.endswith("delete_attachment")]
    assert attachment.object_key in record.getMessage()
    assert "s3: connection failed" in record.getMessage()
