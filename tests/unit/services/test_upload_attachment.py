"""UploadAttachment on the in-memory adapters: the type from the bytes, the size limit, the row
committed before its job is queued, nothing left behind on refusal."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID

import pytest

from tests.support.fake_transcription import tiny_wav
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.job_queue import InMemoryJobQueue
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.transcription_metrics import InMemoryTranscriptionMetrics
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.attachments import Attachment, AttachmentStatus
from whalli.domain.model.errors import (
    AccountDisabled,
    AttachmentTooLarge,
    ModelNotInPlan,
    PermissionDenied,
    ProjectNotFound,
    ServiceUnavailable,
    UnsupportedFileType,
)
from whalli.domain.model.jobs import ExtractAttachment, Job
from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.domain.model.transcription_models import TranscriptionModel, TranscriptionSpec
from whalli.domain.model.users import Plan, User
from whalli.domain.services.files.upload_attachment import (
    UploadAttachment,
    UploadAttachmentHandler,
)
from whalli.domain.services.projects.ensure_personal_project import (
    EnsurePersonalProject,
    EnsurePersonalProjectHandler,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


class CheckingQueue(InMemoryJobQueue):
    """Records, for each job, whether its attachment row was already committed (visible to a
    new unit of work) when the job was enqueued."""

    def __init__(self, store: MemoryStore, *, down: bool = False) -> None:
        super().__init__()
        self.store, self.down = store, down
        self.row_committed: list[bool] = []

    async def enqueue(self, job: Job, *, delay_ms: int = 0) -> None:
        assert isinstance(job, ExtractAttachment)
        async with InMemoryUnitOfWork(self.store) as uow:
            found = [a for a in await _all(uow) if a.id == job.attachment_id]
        self.row_committed.append(bool(found))
        if self.down:
            raise ServiceUnavailable("The job queue is unavailable.")
        await super().enqueue(job, delay_ms=delay_ms)


async def _all(uow: InMemoryUnitOfWork) -> list[Attachment]:
    found: list[Attachment] = uow.attachments._tx().select("attachments", lambda a: True)
    return found


class Files:
    def __init__(
        self, *, max_bytes: int = 1_000_000, queue_down: bool = False,
        transcription_model: TranscriptionModel | None = None,
    ) -> None:  # fmt: skip
        self.transcription_model = transcription_model
        self.store = MemoryStore()
        self.clock = ManualClock(T0)
        self.ids = SequentialIds()
        self.blobs = InMemoryBlobStorage()
        self.jobs = CheckingQueue(self.store, down=queue_down)
        self.max_bytes = max_bytes
        self.metrics = InMemoryTranscriptionMetrics()

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    def handler(self) -> UploadAttachmentHandler:
        return UploadAttachmentHandler(
            self.uow(), self.blobs, self.jobs, self.clock, self.ids, max_bytes=self.max_bytes,
            transcription_model=self.transcription_model, metrics=self.metrics,
        )  # fmt: skip

    async def user(self, name: str) -> User:
        user = User.create(
            id=self.ids.new_id(), email=f"{name}@example.com", name=name, now=self.clock.now()
        )
        async with self.uow() as uow:
            await uow.users.add(user)
            await uow.commit()
        await EnsurePersonalProjectHandler(self.uow(), self.clock).execute(
            EnsurePersonalProject(user_id=user.id)
        )
        return user

    async def share(self, project: Project, user: User, role: MemberRole) -> None:
        member = Membership(
            project_id=project.id, user_id=user.id, role=role, created_at=self.clock.now()
        )
        async with self.uow() as uow:
            await uow.projects.add_member(member)
            await uow.commit()

    async def personal(self, user: User) -> Project:
        async with self.uow() as uow:
            projects = await uow.projects.list_for_user(user.id)
        return next(p for p in projects if p.personal and p.owner_id == user.id)

    async def rows(self) -> list[Attachment]:
        async with self.uow() as uow:
            return await _all(uow)

    async def upload(
        self, user: User, data: bytes, name: str = "a.png", project_id: UUID | None = None
    ) -> Attachment:
        command = UploadAttachment(
            user_id=user.id, project_id=project_id, filename=name, chunks=_chunks(data)
        )
        return await self.handler().execute(command)


async def _chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_an_upload_is_stored_recorded_pending_and_then_queued() -> None:
    files = Files()
    alice = await files.user("alice")
    attachment = await files.upload(alice, PNG, name="../../etc/shot.png")
    project = await files.personal(alice)
    assert attachment.project_id == project.id
    assert attachment.object_key == f"{project.id}/{attachment.id}"
    assert attachment.filename == "shot.png"
    assert attachment.content_type == "image/png"
    assert attachment.size_bytes == len(PNG)
    assert attachment.sha256 == hashlib.sha256(PNG).hexdigest()
    assert attachment.status is AttachmentStatus.PENDING
    assert [r.id for r in await files.rows()] == [attachment.id]
    stored = b"".join([c async for c in await files.blobs.get(attachment.object_key)])
    assert stored == PNG
    assert files.jobs.jobs == [ExtractAttachment(attachment_id=attachment.id)]
    assert files.jobs.row_committed == [True]


@pytest.mark.parametrize(
    ("data", "charset"),
    [
        ("Résumé of the notes.\n".encode() * 1000, "utf-8"),
        (b"\xff\xfe" + "Résumé of the notes.\n".encode("utf-16-le") * 1000, "utf-16"),
        (b"Plain notes.\n" * 1000 + "Résumé".encode("latin-1"), None),  # past the head
        (PNG, None),
    ],
    ids=["utf-8", "utf-16", "not-one-charset", "image"],
)
async def test_a_text_files_charset_is_told_from_all_its_bytes(
    data: bytes, charset: str | None
) -> None:
    files = Files()
    alice = await files.user("alice")
    attachment = await files.upload(alice, data, name="notes.txt")
    assert attachment.charset == charset
    assert [r.charset for r in await files.rows()] == [charset]


async def test_a_queue_outage_after_the_commit_keeps_the_row_for_the_sweeper() -> None:
    files = Files(queue_down=True)
    alice = await files.user("alice")
    attachment = await files.upload(alice, PNG)
    assert files.jobs.row_committed == [True]
    assert [(r.id, r.status) for r in await files.rows()] == [
        (attachment.id, AttachmentStatus.PENDING)
    ]


async def test_crossing_the_size_limit_leaves_no_object_no_row_and_no_job() -> None:
    files = Files(max_bytes=10_000)
    alice = await files.user("alice")
    with pytest.raises(AttachmentTooLarge, match="limit of 10000 bytes"):
        await files.upload(alice, PNG + b"\0" * 20_000)
    assert await files.rows() == []
    assert files.blobs._objects == {}
    assert files.jobs.jobs == []


async def test_a_file_exactly_at_the_limit_is_accepted() -> None:
    files = Files(max_bytes=len(PNG))
    alice = await files.user("alice")
    assert (await files.upload(alice, PNG)).size_bytes == len(PNG)


async def test_the_type_comes_from_the_bytes_and_refusals_store_nothing() -> None:
    files = Files()
    alice = await files.user("alice")
    html = b"<!DOCTYPE html><html><body>hi</body></html>"
    with pytest.raises(UnsupportedFileType, match="text/html") as refused:
        await files.upload(alice, html, name="report.pdf")
    assert refused.value.details["mime"] == "text/html"
    with pytest.raises(UnsupportedFileType, match="empty"):
        await files.upload(alice, b"", name="empty.txt")
    assert await files.rows() == []
    assert files.blobs._objects == {}


async def test_a_row_that_cannot_be_written_takes_its_stored_object_with_it() -> None:
    files = Files()
    alice, bob = await files.user("alice"), await files.user("bob")
    project = await files.personal(alice)
    await files.share(project, bob, MemberRole.EDITOR)

    async def removed_midway() -> AsyncIterator[bytes]:
        yield PNG[:4096]
        async with files.uow() as uow:  # bob loses access while his bytes are arriving
            await uow.projects.remove_member(project.id, bob.id)
            await uow.commit()
        yield PNG[4096:]

    command = UploadAttachment(
        user_id=bob.id, project_id=project.id, filename="a.png", chunks=removed_midway()
    )
    with pytest.raises(ProjectNotFound, match="not found"):
        await files.handler().execute(command)
    assert await files.rows() == []
    assert files.blobs._objects == {}
    assert files.jobs.jobs == []


async def test_viewers_and_strangers_cannot_upload() -> None:
    files = Files()
    alice, bob, carol = await files.user("alice"), await files.user("bob"), await files.user("c")
    project = await files.personal(alice)
    await files.share(project, bob, MemberRole.VIEWER)
    with pytest.raises(PermissionDenied, match="write access"):
        await files.upload(bob, PNG, project_id=project.id)
    with pytest.raises(ProjectNotFound, match="not found"):
        await files.upload(carol, PNG, project_id=project.id)
    await files.share(project, carol, MemberRole.EDITOR)
    assert (await files.upload(carol, PNG, project_id=project.id)).user_id == carol.id


async def test_audio_is_refused_before_anything_is_stored_when_the_plan_lacks_the_model() -> None:
    pro = TranscriptionSpec(id="whisper-1", provider="openai", min_plan=Plan.PRO)
    files = Files(transcription_model=TranscriptionModel(name="whisper-1", spec=pro))
    alice = await files.user("alice")

    with pytest.raises(ModelNotInPlan, match=r"plan \(free\) does not include .* whisper-1"):
        await files.upload(alice, tiny_wav(), name="memo.wav")

    assert await files.rows() == []
    assert files.blobs._objects == {}
    assert files.jobs.jobs == []
    assert files.metrics.outcomes == {("whisper-1", "refused"): 1}  # as the refusal on /v1
    await files.upload(alice, PNG)  # other files are not transcribed: any plan uploads them
    async with files.uow() as uow:
        user = await uow.users.get(alice.id)
        user.plan = Plan.PRO
        await uow.users.update(user)
        await uow.commit()
    voice = await files.upload(alice, tiny_wav(), name="memo.wav")
    assert voice.content_type == "audio/wav"
    assert files.metrics.outcomes == {("whisper-1", "refused"): 1}  # the worker counts the rest


async def test_audio_from_a_disabled_account_is_refused_and_counted_refused() -> None:
    files = Files(transcription_model=TranscriptionModel(name="whisper-1"))
    alice = await files.user("alice")
    async with files.uow() as uow:  # disabled since the request was authenticated
        user = await uow.users.get(alice.id)
        user.disabled = True
        await uow.users.update(user)
        await uow.commit()

    with pytest.raises(AccountDisabled, match="disabled"):
        await files.upload(alice, tiny_wav(), name="memo.wav")

    assert (await files.rows(), files.blobs._objects, files.jobs.jobs) == ([], {}, [])
    assert files.metrics.outcomes == {("whisper-1", "refused"): 1}


async def test_audio_over_the_upload_limit_is_counted_refused_and_other_files_are_not() -> None:
    files = Files(max_bytes=10_000, transcription_model=TranscriptionModel(name="whisper-1"))
    alice = await files.user("alice")

    with pytest.raises(AttachmentTooLarge, match="larger than the limit"):
        await files.upload(alice, tiny_wav(frames=8000), name="memo.wav")
    with pytest.raises(AttachmentTooLarge, match="larger than the limit"):
        await files.upload(alice, PNG * 2)

    assert files.metrics.outcomes == {("whisper-1", "refused"): 1}
    assert await files.rows() == []
