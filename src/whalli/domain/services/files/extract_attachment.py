"""Use case: extract the text of an uploaded file in the background (``ExtractAttachment``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from pathlib import Path

import msgspec

from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.model.errors import AttachmentNotFound, BlobNotFound, ExtractionFailed
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.model.transcription_models import TranscriptionModel, TranscriptionUsage
from whalli.domain.services.files.spool import spool_prefix
from whalli.domain.services.files.transcribe_attachment import (
    DEFAULT_MAX_BYTES,
    AttachmentTranscription,
    is_audio,
)
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.text_extractor import TextExtractor
from whalli.ports.transcriber import Transcriber
from whalli.ports.transcription_metrics import TranscriptionMetrics
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

MISSING_FILE = "the file is missing"


class ExtractAttachmentHandler:
    """Move an attachment ``pending → processing → done | failed``.

    Rules:
    - jobs are delivered at least once: a job for an attachment that is already ``done`` or
      ``failed`` (or no longer exists) does nothing; one for a ``processing`` attachment takes
      the work over (its previous worker died);
    - the row is locked only while its status changes, never while the file is read;
    - the object is streamed to a temporary file (memory stays bounded) that is always removed;
      one left by a worker killed mid-job is removed when a worker starts (see ``spool``);
    - a file that cannot be read (corrupt, encrypted, a bomb, too slow) ends ``failed`` with
      the extractor's reason and is not retried; a missing object ends ``failed`` too;
    - an unreachable store or database (``ServiceUnavailable``) propagates, so the queue
      retries with backoff; the attachment stays ``processing`` until then;
    - the text is capped at ``max_chars`` (marked truncated);
    - an audio file's text is its transcript, by the ``transcriber`` instead of the extractor,
      recorded as its ``Transcription`` too, what it used as the user's usage record (see
      ``AttachmentTranscription`` for its rules: the owner's plan is checked again), even when
      the file was deleted meanwhile.
    """

    def __init__(
        self,
        uow: UnitOfWork,
        blobs: BlobStorage,
        extractor: TextExtractor,
        clock: Clock,
        *,
        temp_dir: str | Path | None = None,
        max_chars: int = 1_000_000,
        transcriber: Transcriber | None = None,
        ids: IdGenerator | None = None,
        transcription_max_bytes: int = DEFAULT_MAX_BYTES,
        transcription_model: TranscriptionModel | None = None,
        transcription_metrics: TranscriptionMetrics | None = None,
    ) -> None:
        self._uow, self._blobs, self._extractor, self._clock = uow, blobs, extractor, clock
        self._temp_dir = None if temp_dir is None else str(temp_dir)
        self._max_chars = max_chars
        self._audio = AttachmentTranscription(
            transcriber, ids, transcription_max_bytes,
            model=transcription_model or TranscriptionModel(name="unlisted"),
            metrics=transcription_metrics,
        )  # fmt: skip

    async def execute(self, job: ExtractAttachment) -> None:
        attachment = await self._start(job)
        if attachment is None:
            return
        usage: TranscriptionUsage | None = None
        try:
            result: ExtractionResult | str
            result, usage = await self._extract(attachment)
        except ExtractionFailed as e:
            result = e.message
        except BlobNotFound:
            result = MISSING_FILE
        if not await self._finish(attachment, result, usage) and usage is not None:
            await self._audio.record_deleted(self._uow, attachment, usage, self._clock.now())

    async def _start(self, job: ExtractAttachment) -> Attachment | None:
        async with self._uow as uow:
            try:
                attachment = await uow.attachments.get_for_update(job.attachment_id)
            except AttachmentNotFound:
                log.info("Attachment %s was deleted before its extraction.", job.attachment_id)
                return None
            if attachment.is_final:
                return None
            now = self._clock.now()
            attachment.start_processing(now)
            await uow.attachments.update(attachment)
            if is_audio(attachment):
                await self._audio.start(uow, attachment, now)
            await uow.commit()
        return attachment

    async def _extract(
        self, attachment: Attachment
    ) -> tuple[ExtractionResult, TranscriptionUsage | None]:
        """The file's text, and what transcribing it used (``None``: not audio)."""
        audio = is_audio(attachment)
        usage = None
        if audio and (refused := await self._audio.refusal(self._uow, attachment)) is not None:
            raise ExtractionFailed(refused)
        handle, name = tempfile.mkstemp(prefix=spool_prefix(), dir=self._temp_dir)
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as file:
                chunks = await self._blobs.get(attachment.object_key)
                async for chunk in chunks:
                    await asyncio.to_thread(file.write, chunk)
            if audio:
                result, usage = await self._audio.transcribe(path, attachment)
            else:
                result = await self._extractor.extract(path, attachment.content_type)
        finally:
            await asyncio.to_thread(_remove, path)
        if len(result.text) > self._max_chars:
            result = msgspec.structs.replace(
                result, text=result.text[: self._max_chars], truncated=True
            )
        return result, usage

    async def _finish(
        self, started: Attachment, result: ExtractionResult | str,
        usage: TranscriptionUsage | None = None,
    ) -> bool:  # fmt: skip
        """End the attachment; whether it still existed (``False``: deleted meanwhile)."""
        async with self._uow as uow:
            try:
                attachment = await uow.attachments.get_for_update(started.id)
            except AttachmentNotFound:
                return False  # deleted while it was being read
            if attachment.is_final:
                return True  # a concurrent delivery finished first
            now = self._clock.now()
            if isinstance(result, str):
                attachment.fail(result, now)
            else:
                attachment.complete(result, now)
            await uow.attachments.update(attachment)
            if is_audio(attachment):
                await self._audio.finish(uow, attachment, result, now, usage)
            await uow.commit()
        return True


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
