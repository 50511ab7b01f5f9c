"""The extraction job and its sweeper on in-memory adapters: done, failed, redelivered, retried."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest

from tests.integration.entities import World, an_attachment, committed_world
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.job_queue import InMemoryJobQueue
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.text_extractor import InMemoryTextExtractor
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.attachments import Attachment, AttachmentStatus
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.services.files.extract_attachment import ExtractAttachmentHandler
from whalli.domain.services.files.requeue_stale import GAVE_UP, RequeueStaleAttachments


class UnreachableBlobs(InMemoryBlobStorage):
    async def get(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        raise ServiceUnavailable("The object store is unavailable.")


class Files:
    def __init__(self, tmp_path: Path) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.blobs = InMemoryBlobStorage()
        self.extractor = InMemoryTextExtractor(max_chars=50)
        self.temp_dir = tmp_path / "downloads"
        self.temp_dir.mkdir()
        self.queue = InMemoryJobQueue()

    def handler(self, blobs: InMemoryBlobStorage | None = None) -> ExtractAttachmentHandler:
        return ExtractAttachmentHandler(
            InMemoryUnitOfWork(self.store), blobs or self.blobs, self.extractor, self.clock,
            temp_dir=self.temp_dir, max_chars=40,
        )  # fmt: skip

    def sweeper(self) -> RequeueStaleAttachments:
        return RequeueStaleAttachments(
            InMemoryUnitOfWork(self.store), self.queue, self.clock,
            older_than=timedelta(minutes=5), processing_older_than=timedelta(minutes=15),
            give_up_after=timedelta(days=1),
        )  # fmt: skip

    async def upload(
        self, data: bytes | None, content_type: str = "text/plain", world: World | None = None
    ) -> Attachment:
        world = world or await committed_world(InMemoryUnitOfWork(self.store))
        attachment = an_attachment(world.project, world.user, now=self.clock.now())
        attachment.content_type = content_type
        if data is not None:
            await self.blobs.put(attachment.object_key, _chunks(data), content_type)
        async with InMemoryUnitOfWork(self.store) as uow:
            await uow.attachments.add(attachment)
            await uow.commit()
        return attachment

    async def read(self, attachment_id: UUID) -> Attachment:
        async with InMemoryUnitOfWork(self.store) as uow:
            return await uow.attachments.get(attachment_id)

    def leftovers(self) -> list[Path]:
        return list(self.temp_dir.iterdir())


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 7):
        yield data[start : start + 7]


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


async def test_an_extracted_file_ends_done_with_its_text_and_no_temp_file(files: Files) -> None:
    attachment = await files.upload(b"Quarterly report: revenue grew.")
    files.clock.advance(3)

    await files.handler().execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await files.read(attachment.id)
    assert stored.status is AttachmentStatus.DONE
    assert stored.extraction is not None
    assert stored.extraction.text == "Quarterly report: revenue grew."
    assert stored.failure_reason is None
    assert stored.updated_at == files.clock.now()
    assert files.leftovers() == []


async def test_the_text_is_capped_and_marked_truncated(files: Files) -> None:
    attachment = await files.upload(b"x" * 45)

    await files.handler().execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await files.read(attachment.id)
    assert stored.extraction is not None
    assert (len(stored.extraction.text), stored.extraction.truncated) == (40, True)


async def test_an_unreadable_file_ends_failed_with_the_reason_without_raising(
    files: Files,
) -> None:
    attachment = await files.upload(b"\x89PNG....", content_type="image/png")

    await files.handler().execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await files.read(attachment.id)
    assert stored.status is AttachmentStatus.FAILED
    assert stored.failure_reason == "Cannot extract text from image/png files."
    assert stored.extraction is None
    assert files.leftovers() == []


async def test_a_missing_object_ends_failed_saying_the_file_is_missing(files: Files) -> None:
    attachment = await files.upload(None)

    await files.handler().execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await files.read(attachment.id)
    assert (stored.status, stored.failure_reason) == (
        AttachmentStatus.FAILED,
        "the file is missing",
    )


async def test_a_redelivered_job_after_done_changes_nothing(files: Files) -> None:
    attachment = await files.upload(b"first version")
    job = ExtractAttachment(attachment_id=attachment.id)
    await files.handler().execute(job)
    done = await files.read(attachment.id)
    await files.blobs.put(attachment.object_key, _chunks(b"other bytes"), "text/plain")
    files.clock.advance(60)

    await files.handler().execute(job)

    assert await files.read(attachment.id) == done


async def test_a_redelivered_job_after_failed_changes_nothing(files: Files) -> None:
    attachment = await files.upload(None)
    job = ExtractAttachment(attachment_id=attachment.id)
    await files.handler().execute(job)
    failed = await files.read(attachment.id)
    await files.blobs.put(attachment.object_key, _chunks(b"late bytes"), "text/plain")

    await files.handler().execute(job)

    assert await files.read(attachment.id) == failed


async def test_a_job_for_a_deleted_attachment_does_nothing(files: Files) -> None:
    attachment = await files.upload(b"soon gone")
    async with InMemoryUnitOfWork(files.store) as uow:
        await uow.attachments.delete(attachment.id)
        await uow.commit()

    await files.handler().execute(ExtractAttachment(attachment_id=attachment.id))

    assert files.store.tables["attachments"] == {}


async def test_an_unreachable_store_raises_and_leaves_processing_for_the_retry(
    files: Files,
) -> None:
    attachment = await files.upload(b"Retry me later.")
    job = ExtractAttachment(attachment_id=attachment.id)

    with pytest.raises(ServiceUnavailable, match="object store is unavailable"):
        await files.handler(UnreachableBlobs()).execute(job)
    assert (await files.read(attachment.id)).status is AttachmentStatus.PROCESSING
    assert files.leftovers() == []

    await files.handler().execute(job)  # the retry takes the work over
    stored = await files.read(attachment.id)
    assert stored.status is AttachmentStatus.DONE
    assert stored.extraction is not None
    assert stored.extraction.text == "Retry me later."


async def test_the_sweeper_requeues_stale_pending_and_processing_attachments_only(
    files: Files,
) -> None:
    world = await committed_world(InMemoryUnitOfWork(files.store))
    stale_pending = await files.upload(b"a", world=world)
    stuck = await files.upload(b"b", world=world)
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await files.handler(UnreachableBlobs()).execute(ExtractAttachment(attachment_id=stuck.id))
    done = await files.upload(b"c", world=world)
    await files.handler().execute(ExtractAttachment(attachment_id=done.id))
    files.clock.advance(timedelta(minutes=10))
    fresh_pending = await files.upload(b"d", world=world)

    assert await files.sweeper().execute() == 1
    assert files.queue.jobs == [ExtractAttachment(attachment_id=stale_pending.id)]

    files.clock.advance(timedelta(minutes=10))
    await files.sweeper().execute()
    # the pending ones first (both last touched 10 minutes ago: the requeue counts), then the
    # stuck one
    again = files.queue.jobs[1:]
    assert {job.attachment_id for job in again[:2]} == {stale_pending.id, fresh_pending.id}
    assert again[2:] == [ExtractAttachment(attachment_id=stuck.id)]
    assert (await files.read(stuck.id)).status is AttachmentStatus.PROCESSING


async def test_the_sweeper_queues_a_backlog_once_per_threshold_not_at_every_run(
    files: Files,
) -> None:
    # The worker is behind: the jobs wait in the queue and the attachments stay pending.
    world = await committed_world(InMemoryUnitOfWork(files.store))
    backlog = [await files.upload(data, world=world) for data in (b"a", b"b", b"c")]
    # Uploaded at the same moment: queued by id.
    jobs = [ExtractAttachment(attachment_id=a.id) for a in sorted(backlog, key=lambda a: a.id)]
    files.clock.advance(timedelta(minutes=6))

    assert await files.sweeper().execute() == 3
    files.clock.advance(timedelta(minutes=4))  # 10 since the upload, 4 since the requeue
    assert await files.sweeper().execute() == 0
    assert files.queue.jobs == jobs

    files.clock.advance(timedelta(minutes=2))  # 6 since the requeue: the job may be lost
    assert await files.sweeper().execute() == 3
    assert files.queue.jobs == jobs + jobs
    assert [(await files.read(a.id)).status for a in backlog] == [AttachmentStatus.PENDING] * 3


async def test_the_sweeper_gives_up_on_an_attachment_processing_since_long_ago(
    files: Files,
) -> None:
    stuck = await files.upload(b"poison")
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await files.handler(UnreachableBlobs()).execute(ExtractAttachment(attachment_id=stuck.id))
    files.clock.advance(timedelta(days=2))

    assert await files.sweeper().execute() == 0

    stored = await files.read(stuck.id)
    assert (stored.status, stored.failure_reason) == (AttachmentStatus.FAILED, GAVE_UP)
    assert files.queue.jobs == []
