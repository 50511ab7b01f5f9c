"""The audio part of an attachment's extraction (``ExtractAttachmentHandler``): its text is its
transcript, and every transcription is kept as a ``Transcription`` row (its history)."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from uuid import UUID

from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.model.errors import (
    AccountDisabled,
    Conflict,
    ExtractionFailed,
    ModelNotInPlan,
    ProviderError,
    ServiceUnavailable,
    TranscriptionNotConfigured,
    UserNotFound,
)
from whalli.domain.model.transcription_models import TranscriptionModel, TranscriptionUsage
from whalli.domain.model.transcriptions import Transcription, TranscriptionStatus
from whalli.domain.services.chat import usage_writes
from whalli.domain.services.chat.usage_writes import write_usage_retrying
from whalli.domain.services.transcriptions.usage import outcome_of, report, usage_record
from whalli.ports.ids import IdGenerator
from whalli.ports.transcriber import Transcriber
from whalli.ports.transcription_metrics import TranscriptionMetrics
from whalli.ports.unit_of_work import UnitOfWork
from whalli.ports.usage import UsageRecord

METHOD = "transcription"
DEFAULT_MAX_BYTES = 25 * 1024 * 1024  # OpenAI's limit per file
_USAGE_NAMESPACE = UUID("3b0f6a52-9d1e-4c4b-8f0e-7a2d5c9e1b64")


def is_audio(attachment: Attachment) -> bool:
    return attachment.content_type.startswith("audio/")


def usage_id(attachment_id: UUID) -> UUID:
    """The id of the usage record of an attachment's transcription: the same for every
    delivery of its job, so that two deliveries collide on it instead of recording it twice."""
    return uuid.uuid5(_USAGE_NAMESPACE, str(attachment_id))


class AttachmentTranscription:
    """Rules:
    - no transcriber configured: the file fails with ``TranscriptionNotConfigured``'s reason;
    - the owner's plan, read fresh when the job runs (it may have been lowered, or the account
      disabled, since the upload checked it), must include the ``model``: else the file fails
      with the reason the upload would have given, before the provider is called (nothing
      used, nothing charged), not retried; an owner gone meanwhile (the file goes with them)
      fails it too;
    - a file over ``max_bytes`` (the provider's own limit) fails before it is downloaded;
    - a provider refusing the audio (``ProviderError`` not retryable: bad or unsupported audio,
      a rejected key) fails the file with its reason, not retried; one that may succeed later
      (``ServiceUnavailable``, a retryable ``ProviderError``: a 429 or 5xx) propagates as
      ``ServiceUnavailable`` so that the queue retries, with the provider's ``retry_after``
      seconds when it said (the queue waits at least that long);
    - one ``Transcription`` row per attachment, started with the attachment under its row lock
      and finished in the same transaction as the attachment: a redelivered job finds it and
      takes it over, never adds a second;
    - what a completed transcription used is the user's usage record (``usage_record``: the
      ``model``'s price), added in the transaction that ends its row ``done``: only the delivery
      that ends the row records it, so a job delivered twice records it once;
    - a file deleted while it was transcribed (its rows gone with it) still has its paid
      transcription recorded (``record_deleted``: usage outlives what it paid for), written on
      its own; the record's id is the attachment's (``usage_id``) on both paths, so that
      deliveries racing the deletion record it once; an account deleted meanwhile: nobody to
      charge, nothing written;
    - every call, and every file refused for its plan or its size, is counted in ``metrics``.
    """

    def __init__(
        self,
        transcriber: Transcriber | None,
        ids: IdGenerator | None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        model: TranscriptionModel,
        metrics: TranscriptionMetrics | None = None,
    ) -> None:
        self._transcriber, self._ids, self._max_bytes = transcriber, ids, max_bytes
        self._model, self._metrics = model, metrics

    async def refusal(self, uow: UnitOfWork, attachment: Attachment) -> str | None:
        """Why the file fails before it is downloaded, if it does (``uow``: to read its owner's
        plan, in a transaction of its own)."""
        if self._transcriber is None:
            return TranscriptionNotConfigured.default_message
        async with uow:
            try:
                owner = await uow.users.get(attachment.user_id)
            except UserNotFound:
                return "the file's owner no longer exists"
        try:
            self._model.ensure_allowed(owner)
        except (ModelNotInPlan, AccountDisabled) as e:
            report(self._metrics, self._model, "refused")
            return e.message
        if attachment.size_bytes > self._max_bytes:
            report(self._metrics, self._model, "refused")
            return (
                f"the audio file is larger than the transcription limit of {self._max_bytes} bytes"
            )
        return None

    async def transcribe(
        self, path: Path, attachment: Attachment
    ) -> tuple[ExtractionResult, TranscriptionUsage]:
        if self._transcriber is None:
            raise ExtractionFailed(TranscriptionNotConfigured.default_message)
        try:
            transcript = await self._transcriber.transcribe(path, attachment.content_type)
        except (ProviderError, ServiceUnavailable) as e:
            report(self._metrics, self._model, outcome_of(e))
            if isinstance(e, ServiceUnavailable):
                raise
            if e.retryable:
                raise ServiceUnavailable(e.message, retry_after=e.details.get("retry_after")) from e
            raise ExtractionFailed(e.message) from e
        report(self._metrics, self._model, "done", transcript.usage)
        return ExtractionResult(text=transcript.text, method=METHOD), transcript.usage

    async def start(self, uow: UnitOfWork, attachment: Attachment, now: datetime) -> None:
        """Record (or take over) the attachment's transcription as processing."""
        found = await uow.transcriptions.get_for_attachment(attachment.id)
        if found is not None and found.status in (
            TranscriptionStatus.DONE,
            TranscriptionStatus.FAILED,
        ):
            found = None  # an earlier one ended: this is a new attempt (never happens today)
        if found is None:
            if self._ids is None:
                raise RuntimeError("transcriptions need an IdGenerator")
            found = Transcription(
                id=self._ids.new_id(), attachment_id=attachment.id, user_id=attachment.user_id,
                created_at=now, updated_at=now,
            )  # fmt: skip
            found.start(now)
            await uow.transcriptions.add(found)
            return
        found.start(now)
        await uow.transcriptions.update(found)

    async def finish(
        self, uow: UnitOfWork, attachment: Attachment, result: ExtractionResult | str,
        now: datetime, usage: TranscriptionUsage | None = None,
    ) -> None:  # fmt: skip
        """End the attachment's running transcription as the attachment ends, and record what
        it used (``usage``) when this ends it done."""
        done = await end_transcription(uow, attachment, result, now)
        if done and usage is not None:
            await uow.usage.add(self._record(attachment, usage, now))

    async def record_deleted(
        self, uow: UnitOfWork, attachment: Attachment, usage: TranscriptionUsage, now: datetime
    ) -> None:
        """Record what transcribing ``attachment``, deleted meanwhile, used: autocommitted,
        retried while the database does not answer (``ServiceUnavailable`` at last)."""
        record = self._record(attachment, usage, now)
        try:
            await write_usage_retrying(
                uow, lambda writing: writing.usage.add(record),
                attempts=usage_writes.ATTEMPTS, backoff_s=usage_writes.BACKOFF_S,
            )  # fmt: skip
        except Conflict:
            return  # a racing delivery recorded it first

    def _record(
        self, attachment: Attachment, usage: TranscriptionUsage, now: datetime
    ) -> UsageRecord:
        return usage_record(
            self._model, usage, record_id=usage_id(attachment.id), user_id=attachment.user_id,
            now=now,
        )  # fmt: skip


async def end_transcription(
    uow: UnitOfWork, attachment: Attachment, result: ExtractionResult | str, now: datetime
) -> bool:
    """End the attachment's transcription if it is still running: done with the text, or
    failed with ``result`` as its reason (an ending attachment never leaves it running).
    Whether this ended it done."""
    found = await uow.transcriptions.get_for_attachment(attachment.id)
    if found is None or found.status is not TranscriptionStatus.PROCESSING:
        return False
    if isinstance(result, str):
        found.fail(result, now)
    else:
        found.complete(result.text, None, now)
    await uow.transcriptions.update(found)
    return not isinstance(result, str)
