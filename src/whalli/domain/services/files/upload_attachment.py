"""Use case: store an uploaded file and queue its text extraction."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import suppress
from uuid import UUID

import msgspec

from whalli.domain.model.attachments import Attachment, AttachmentStatus
from whalli.domain.model.errors import (
    AccountDisabled,
    AttachmentTooLarge,
    ModelNotInPlan,
    ServiceUnavailable,
    TranscriptionNotConfigured,
)
from whalli.domain.model.file_types import HEAD_SIZE, DetectedType, FileKind, detect
from whalli.domain.model.filenames import sanitize_filename
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.model.text_charsets import CharsetCheck
from whalli.domain.model.transcription_models import TranscriptionModel
from whalli.domain.model.users import User
from whalli.domain.services.projects.access import require_role
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.domain.services.transcriptions.usage import report
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.job_queue import JobQueue
from whalli.ports.transcription_metrics import TranscriptionMetrics
from whalli.ports.unit_of_work import UnitOfWork

DEFAULT_MAX_BYTES = 50 * 1024 * 1024


class UploadAttachment(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID | None  # None: the caller's personal project
    filename: str  # as the client sent it; only ever kept sanitized
    chunks: AsyncIterator[bytes]


class UploadAttachmentHandler:
    """Stream an upload to blob storage, record it as ``pending`` and queue its extraction.

    Rules:
    - the caller needs write access to the project (no ``project_id``: their personal project);
      a non-member gets ``ProjectNotFound``, a viewer ``PermissionDenied``, before any byte is
      stored;
    - the type comes from the content's first ``HEAD_SIZE`` bytes (``file_types.detect``), never
      from the name or the client's Content-Type; anything unsupported (an empty file too) is
      ``UnsupportedFileType`` naming the detected type, before anything is stored; audio (its
      text is its transcript) is ``TranscriptionNotConfigured`` when ``accepts_audio`` is off
      (no speech-to-text provider), and ``ModelNotInPlan`` (403, as a chat start with a model
      above the plan) when the uploader's plan does not include the configured
      ``transcription_model`` (``AccountDisabled`` for a disabled account), before anything is
      stored too; audio refused for its plan, its account or its size is counted ``refused``
      in ``metrics``, as the same refusals on /v1 and by the worker are (the worker checks the
      plan again and counts the rest);
    - the object key is generated (``{project_id}/{attachment_id}``); the client's file name is
      kept only sanitized, as metadata;
    - bytes are streamed (memory stays bounded) while their size and sha256 are computed, and
      a text file's charset is told (``text_charsets``: what a download says it is in); the
      moment the size crosses ``max_bytes`` the upload stops with ``AttachmentTooLarge`` and the
      blob store leaves nothing behind;
    - the row is committed, THEN the ``ExtractAttachment`` job is enqueued: a crash or a broker
      outage in between leaves a ``pending`` row that the sweeper re-enqueues, so no job ever
      names a missing row and no row goes without a job for long;
    - if the row cannot be written the stored object is deleted.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        blobs: BlobStorage,
        jobs: JobQueue,
        clock: Clock,
        ids: IdGenerator,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        accepts_audio: bool = True,
        transcription_model: TranscriptionModel | None = None,
        metrics: TranscriptionMetrics | None = None,
    ) -> None:
        self._uow, self._blobs, self._jobs = uow, blobs, jobs
        self._clock, self._ids = clock, ids
        self.max_bytes = max_bytes
        self._accepts_audio = accepts_audio
        self._transcription_model = transcription_model
        self._metrics = metrics

    async def execute(self, command: UploadAttachment) -> Attachment:
        project_id = command.project_id or personal_project_id(command.user_id)
        user: User | None = None
        async with self._uow as uow:  # a short transaction: none is held during the upload
            await require_role(uow, project_id, command.user_id, "write")
            if self._transcription_model is not None:
                user = await uow.users.get(command.user_id)  # its plan, should it be audio
        filename = sanitize_filename(command.filename)
        head, rest = await _read_head(command.chunks)
        detected = detect(head, filename)
        if detected.kind is FileKind.AUDIO:
            if not self._accepts_audio:
                raise TranscriptionNotConfigured(mime=detected.mime)
            if self._transcription_model is not None and user is not None:
                self._ensure_allowed(self._transcription_model, user)
        attachment_id = self._ids.new_id()
        key = Attachment.key_for(project_id, attachment_id)
        charset = CharsetCheck(head) if detected.kind is FileKind.TEXT else None
        measure = _Measure(self.max_bytes, charset)
        try:
            await self._blobs.put(key, measure.stream(head, rest), detected.mime)
        except AttachmentTooLarge:
            if detected.kind is FileKind.AUDIO and self._transcription_model is not None:
                report(self._metrics, self._transcription_model, "refused")
            raise
        try:
            attachment = await self._record(
                command, project_id, attachment_id, key, filename, detected, measure.size,
                measure.digest.hexdigest(), None if charset is None else charset.charset(),
            )  # fmt: skip
        except BaseException:
            with suppress(Exception):  # the original error is what the caller must see
                await self._blobs.delete(key)
            raise
        # Swallowed on purpose: the row is committed and the sweeper re-enqueues stale pending
        # rows, so answering an error here would only make the client upload a duplicate.
        with suppress(ServiceUnavailable):
            await self._jobs.enqueue(ExtractAttachment(attachment_id=attachment.id))
        return attachment

    def _ensure_allowed(self, model: TranscriptionModel, user: User) -> None:
        try:
            model.ensure_allowed(user)
        except (ModelNotInPlan, AccountDisabled):
            report(self._metrics, model, "refused")
            raise

    async def _record(
        self, command: UploadAttachment, project_id: UUID, attachment_id: UUID, key: str,
        filename: str, detected: DetectedType, size: int, sha256: str, charset: str | None,
    ) -> Attachment:  # fmt: skip
        now = self._clock.now()
        attachment = Attachment(
            id=attachment_id, project_id=project_id, user_id=command.user_id, object_key=key,
            filename=filename, content_type=detected.mime, charset=charset, size_bytes=size,
            sha256=sha256, status=AttachmentStatus.PENDING, created_at=now, updated_at=now,
        )  # fmt: skip
        async with self._uow as uow:
            # again: the membership may have changed while the bytes were arriving
            await require_role(uow, project_id, command.user_id, "write")
            await uow.attachments.add(attachment)
            await uow.commit()
        return attachment


class _Measure:
    """Counts and hashes the bytes passing through (and feeds them to ``charset``, if given);
    stops them once they cross the limit."""

    def __init__(self, max_bytes: int, charset: CharsetCheck | None = None) -> None:
        self.max_bytes = max_bytes
        self.charset = charset
        self.size = 0
        self.digest = hashlib.sha256()

    async def stream(self, head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        if head:
            yield self._count(head)
        async for chunk in rest:
            if chunk:
                yield self._count(chunk)

    def _count(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise AttachmentTooLarge(
                f"The file is larger than the limit of {self.max_bytes} bytes.",
                limit_bytes=self.max_bytes,
            )
        self.digest.update(chunk)
        if self.charset is not None:
            self.charset.feed(chunk)
        return chunk


async def _read_head(chunks: AsyncIterator[bytes]) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first ``HEAD_SIZE`` bytes (fewer if the content is shorter) and the iterator, which
    goes on after them; the head may be longer when the chunk that completes it is."""
    head = bytearray()
    while len(head) < HEAD_SIZE:
        try:
            head += await anext(chunks)
        except StopAsyncIteration:
            break
    return bytes(head), chunks
