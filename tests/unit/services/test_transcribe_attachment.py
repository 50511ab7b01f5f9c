"""An audio attachment's extraction is its transcription, on in-memory adapters: done with the
transcript and one transcription row, failed for good, retried, redelivered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import pytest

from tests.integration.entities import an_attachment, committed_world
from tests.support.fake_transcription import tiny_wav
from whalli.adapters.catalog.toml_catalog import default_catalog_path, load_catalog
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.job_queue import InMemoryJobQueue
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.text_extractor import InMemoryTextExtractor
from whalli.adapters.memory.transcriber import InMemoryTranscriber
from whalli.adapters.memory.transcription_metrics import InMemoryTranscriptionMetrics
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.attachments import Attachment, AttachmentStatus
from whalli.domain.model.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderRejectedRequest,
    ServiceUnavailable,
)
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.model.transcription_models import (
    Transcript,
    TranscriptionModel,
    TranscriptionSpec,
    TranscriptionUsage,
)
from whalli.domain.model.transcriptions import Transcription, TranscriptionStatus
from whalli.domain.model.users import Plan
from whalli.domain.services.files.extract_attachment import ExtractAttachmentHandler
from whalli.domain.services.files.requeue_stale import GAVE_UP, RequeueStaleAttachments
from whalli.domain.services.files.transcribe_attachment import usage_id
from whalli.ports.transcriber import Transcriber
from whalli.ports.usage import UsageRecord

WAV = tiny_wav()
SPOKEN = "Remember to call the supplier on Monday."
HALF_A_MINUTE = TranscriptionUsage(seconds=30.0)
WHISPER = load_catalog(default_catalog_path()).transcription_model("whisper-1")
PRO_WHISPER = TranscriptionModel(
    name="whisper-1",
    spec=TranscriptionSpec(id="whisper-1", provider="openai", min_plan=Plan.PRO,
                           usd_per_minute=0.006),
)  # fmt: skip


class FlakyTranscriber(Transcriber):
    """Unavailable (as a 503 or an unreachable server makes the adapter say) ``failures``
    times, then answers as ``then`` does."""

    def __init__(self, failures: int, then: Transcriber, error: Exception | None = None) -> None:
        self.failures, self.then = failures, then
        self.error = error or ServiceUnavailable("The transcription provider answered 503.")

    async def transcribe(
        self, audio: Path, content_type: str, language: str | None = None
    ) -> Transcript:
        if self.failures:
            self.failures -= 1
            raise self.error
        return await self.then.transcribe(audio, content_type, language)


class Audio:
    def __init__(self, tmp_path: Path) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.blobs = InMemoryBlobStorage()
        self.extractor = InMemoryTextExtractor()
        self.transcriber = InMemoryTranscriber(by_content={WAV: SPOKEN}, usage=HALF_A_MINUTE)
        self.metrics = InMemoryTranscriptionMetrics()
        self.temp_dir = tmp_path / "downloads"
        self.temp_dir.mkdir()

    def handler(
        self, transcriber: Transcriber | str | None = "default", max_bytes: int = 25_000_000,
        model: TranscriptionModel = WHISPER,
    ) -> ExtractAttachmentHandler:  # fmt: skip
        chosen = self.transcriber if transcriber == "default" else transcriber
        assert not isinstance(chosen, str)
        return ExtractAttachmentHandler(
            InMemoryUnitOfWork(self.store), self.blobs, self.extractor, self.clock,
            temp_dir=self.temp_dir, max_chars=1000, transcriber=chosen, ids=SequentialIds(),
            transcription_max_bytes=max_bytes, transcription_model=model,
            transcription_metrics=self.metrics,
        )  # fmt: skip

    async def upload(self, data: bytes, content_type: str = "audio/wav") -> Attachment:
        world = await committed_world(InMemoryUnitOfWork(self.store))
        attachment = an_attachment(world.project, world.user, now=self.clock.now())
        attachment.content_type, attachment.size_bytes = content_type, len(data)
        attachment.filename = "memo.wav"
        await self.blobs.put(attachment.object_key, _chunks(data), content_type)
        async with InMemoryUnitOfWork(self.store) as uow:
            await uow.attachments.add(attachment)
            await uow.commit()
        return attachment

    async def read(self, attachment_id: UUID) -> Attachment:
        async with InMemoryUnitOfWork(self.store) as uow:
            return await uow.attachments.get(attachment_id)

    async def change_owner(
        self, attachment: Attachment, *, plan: Plan | None = None, disabled: bool = False
    ) -> None:
        async with InMemoryUnitOfWork(self.store) as uow:
            user = await uow.users.get(attachment.user_id)
            user.plan, user.disabled = plan or user.plan, disabled
            await uow.users.update(user)
            await uow.commit()

    def usage(self) -> list[UsageRecord]:
        return list(self.store.tables["usage_records"].values())

    def transcriptions(self, attachment_id: UUID) -> list[Transcription]:
        rows = self.store.tables["transcriptions"].values()
        return [t for t in rows if t.attachment_id == attachment_id]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
def audio(tmp_path: Path) -> Audio:
    return Audio(tmp_path)


async def test_an_audio_file_ends_done_with_its_transcript_and_a_done_transcription_row(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)

    await audio.handler().execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await audio.read(attachment.id)
    assert stored.status is AttachmentStatus.DONE
    assert stored.extraction is not None
    assert (stored.extraction.text, stored.extraction.method) == (SPOKEN, "transcription")
    [row] = audio.transcriptions(attachment.id)
    assert (row.status, row.text, row.user_id) == (
        TranscriptionStatus.DONE,
        SPOKEN,
        attachment.user_id,
    )
    assert audio.transcriber.calls[0][1:] == ("audio/wav", None)
    assert list(audio.temp_dir.iterdir()) == []


async def test_audio_the_provider_refuses_ends_failed_with_its_reason_and_a_failed_row(
    audio: Audio,
) -> None:
    attachment = await audio.upload(b"RIFF\x00\x00\x00\x00WAVEnot really audio")

    await audio.handler().execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await audio.read(attachment.id)
    assert (stored.status, stored.failure_reason) == (
        AttachmentStatus.FAILED,
        "The audio could not be transcribed.",
    )
    [row] = audio.transcriptions(attachment.id)
    assert (row.status, row.failure_reason) == (
        TranscriptionStatus.FAILED,
        "The audio could not be transcribed.",
    )


async def test_an_unavailable_provider_propagates_and_the_redelivery_finishes_the_same_row(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    flaky = FlakyTranscriber(1, audio.transcriber)
    job = ExtractAttachment(attachment_id=attachment.id)

    with pytest.raises(ServiceUnavailable, match="503"):
        await audio.handler(flaky).execute(job)
    assert (await audio.read(attachment.id)).status is AttachmentStatus.PROCESSING
    [running] = audio.transcriptions(attachment.id)
    assert running.status is TranscriptionStatus.PROCESSING

    await audio.handler(flaky).execute(job)  # the queue's retry
    await audio.handler(flaky).execute(job)  # and a duplicate delivery after it

    assert (await audio.read(attachment.id)).status is AttachmentStatus.DONE
    [row] = audio.transcriptions(attachment.id)
    assert (row.id, row.status, row.text) == (running.id, TranscriptionStatus.DONE, SPOKEN)
    [record] = audio.usage()  # the failed attempt used nothing, the duplicate did nothing
    assert record.audio_seconds == 30.0
    assert audio.metrics.outcomes == {("whisper-1", "failed"): 1, ("whisper-1", "done"): 1}


async def test_a_retryable_provider_error_is_retried_as_service_unavailable(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    error = ProviderError("The provider is rate limiting requests.")
    error.retryable = True
    flaky = FlakyTranscriber(1, audio.transcriber, error)

    with pytest.raises(ServiceUnavailable, match="rate limiting"):
        await audio.handler(flaky).execute(ExtractAttachment(attachment_id=attachment.id))

    assert (await audio.read(attachment.id)).status is AttachmentStatus.PROCESSING


async def test_a_rate_limited_provider_is_retried_no_sooner_than_its_retry_after(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    error = ProviderRateLimited("The transcription provider is rate limiting.", retry_after=7.0)
    error.retryable = True
    flaky = FlakyTranscriber(1, audio.transcriber, error)

    with pytest.raises(ServiceUnavailable, match="rate limiting") as caught:
        await audio.handler(flaky).execute(ExtractAttachment(attachment_id=attachment.id))

    assert caught.value.details["retry_after"] == 7.0  # the queue waits that long
    [running] = audio.transcriptions(attachment.id)
    assert running.status is TranscriptionStatus.PROCESSING


async def test_a_transcription_the_sweeper_gives_up_on_ends_failed_with_its_file(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    with pytest.raises(ServiceUnavailable, match="503"):
        await audio.handler(FlakyTranscriber(9, audio.transcriber)).execute(
            ExtractAttachment(attachment_id=attachment.id)
        )
    audio.clock.advance(timedelta(days=2))
    sweeper = RequeueStaleAttachments(
        InMemoryUnitOfWork(audio.store), InMemoryJobQueue(), audio.clock
    )

    assert await sweeper.execute() == 0

    stored = await audio.read(attachment.id)
    assert (stored.status, stored.failure_reason) == (AttachmentStatus.FAILED, GAVE_UP)
    [row] = audio.transcriptions(attachment.id)
    assert (row.status, row.failure_reason) == (TranscriptionStatus.FAILED, GAVE_UP)


async def test_a_file_over_the_transcription_limit_fails_without_calling_the_provider(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)

    handler = audio.handler(max_bytes=len(WAV) - 1)
    await handler.execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await audio.read(attachment.id)
    assert stored.status is AttachmentStatus.FAILED
    assert stored.failure_reason == (
        f"the audio file is larger than the transcription limit of {len(WAV) - 1} bytes"
    )
    assert audio.transcriber.calls == []
    [row] = audio.transcriptions(attachment.id)
    assert row.status is TranscriptionStatus.FAILED


async def test_without_a_transcriber_audio_fails_saying_transcription_is_not_configured(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)

    await audio.handler(None).execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await audio.read(attachment.id)
    assert (stored.status, stored.failure_reason) == (
        AttachmentStatus.FAILED,
        "voice transcription is not configured on this server",
    )


async def test_other_files_never_reach_the_transcriber_nor_get_a_transcription_row(
    audio: Audio,
) -> None:
    attachment = await audio.upload(b"Plain notes.", content_type="text/plain")

    await audio.handler().execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await audio.read(attachment.id)
    assert stored.extraction is not None
    assert stored.extraction.text == "Plain notes."
    assert audio.transcriber.calls == []
    assert audio.transcriptions(attachment.id) == []


async def test_a_done_transcription_is_the_users_usage_record_priced_by_the_minute(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)

    await audio.handler().execute(ExtractAttachment(attachment_id=attachment.id))

    [record] = audio.usage()
    assert (record.user_id, record.model, record.provider, record.message_id) == (
        attachment.user_id, "whisper-1", "openai", None,
    )  # fmt: skip
    assert (record.audio_seconds, record.prompt_tokens, record.completion_tokens) == (30.0, 0, 0)
    assert record.cost_usd == pytest.approx(0.003)  # half a minute at $0.006
    assert audio.metrics.outcomes == {("whisper-1", "done"): 1}
    assert audio.metrics.audio_seconds == {"whisper-1": 30.0}


async def test_a_job_delivered_again_after_it_ended_records_no_second_usage(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    job = ExtractAttachment(attachment_id=attachment.id)

    await audio.handler().execute(job)
    await audio.handler().execute(job)

    assert len(audio.usage()) == 1
    assert len(audio.transcriber.calls) == 1


async def test_audio_the_provider_refuses_records_no_usage_and_counts_as_refused(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    refusing = FlakyTranscriber(1, audio.transcriber, ProviderRejectedRequest("Bad audio."))

    await audio.handler(refusing).execute(ExtractAttachment(attachment_id=attachment.id))

    assert (await audio.read(attachment.id)).status is AttachmentStatus.FAILED
    assert audio.usage() == []
    assert audio.metrics.outcomes == {("whisper-1", "refused"): 1}


async def test_a_file_over_the_limit_counts_as_refused_and_records_no_usage(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)

    await audio.handler(max_bytes=len(WAV) - 1).execute(
        ExtractAttachment(attachment_id=attachment.id)
    )

    assert audio.usage() == []
    assert audio.metrics.outcomes == {("whisper-1", "refused"): 1}


class DeletingTranscriber(Transcriber):
    """Answers as ``then`` does once ``callers`` calls have arrived, the user having deleted
    the file (or, ``account``, their account) while the provider was working."""

    def __init__(self, audio: Audio, then: Transcriber, *, callers: int = 1) -> None:
        self.audio, self.then, self.callers = audio, then, callers
        self.arrived = 0
        self.all_in = asyncio.Event()
        self.account = False

    async def transcribe(
        self, audio: Path, content_type: str, language: str | None = None
    ) -> Transcript:
        self.arrived += 1
        if self.arrived == self.callers:
            await self._delete()
            self.all_in.set()
        await self.all_in.wait()
        return await self.then.transcribe(audio, content_type, language)

    async def _delete(self) -> None:
        [attachment] = self.audio.store.tables["attachments"].values()
        async with InMemoryUnitOfWork(self.audio.store) as uow:
            if self.account:  # as DeleteAccount does: its projects (and files), then itself
                await uow.projects.delete(attachment.project_id)
                await uow.users.delete(attachment.user_id)
            else:
                await uow.attachments.delete(attachment.id)
            await uow.commit()


async def test_a_file_deleted_while_it_is_transcribed_still_has_its_paid_usage_recorded(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    deleting = DeletingTranscriber(audio, audio.transcriber)

    await audio.handler(deleting).execute(ExtractAttachment(attachment_id=attachment.id))

    assert audio.store.tables["attachments"] == {}
    [record] = audio.usage()
    assert (record.id, record.user_id, record.audio_seconds) == (
        usage_id(attachment.id), attachment.user_id, 30.0,
    )  # fmt: skip
    assert record.cost_usd == pytest.approx(0.003)


async def test_deliveries_racing_the_deletion_of_their_file_record_its_usage_once(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    deleting = DeletingTranscriber(audio, audio.transcriber, callers=2)
    job = ExtractAttachment(attachment_id=attachment.id)

    await asyncio.gather(audio.handler(deleting).execute(job), audio.handler(deleting).execute(job))

    assert len(audio.transcriber.calls) == 2
    assert [record.id for record in audio.usage()] == [usage_id(attachment.id)]


async def test_a_file_whose_account_was_deleted_meanwhile_records_nothing_and_ends_quietly(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    deleting = DeletingTranscriber(audio, audio.transcriber)
    deleting.account = True

    await audio.handler(deleting).execute(ExtractAttachment(attachment_id=attachment.id))

    assert audio.usage() == []


async def test_a_plan_lowered_after_the_upload_fails_the_file_without_calling_the_provider(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)  # the upload let it in: its owner was on pro then
    await audio.change_owner(attachment, plan=Plan.FREE)

    await audio.handler(model=PRO_WHISPER).execute(ExtractAttachment(attachment_id=attachment.id))

    stored = await audio.read(attachment.id)
    reason = "Your plan (free) does not include the transcription model whisper-1; it needs pro."
    assert (stored.status, stored.failure_reason) == (AttachmentStatus.FAILED, reason)
    [row] = audio.transcriptions(attachment.id)
    assert (row.status, row.failure_reason) == (TranscriptionStatus.FAILED, reason)
    assert audio.transcriber.calls == []
    assert audio.usage() == []
    assert audio.metrics.outcomes == {("whisper-1", "refused"): 1}


async def test_a_plan_that_includes_the_model_when_the_job_runs_is_transcribed_and_charged(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    await audio.change_owner(attachment, plan=Plan.ENTERPRISE)

    await audio.handler(model=PRO_WHISPER).execute(ExtractAttachment(attachment_id=attachment.id))

    assert (await audio.read(attachment.id)).status is AttachmentStatus.DONE
    [record] = audio.usage()
    assert record.cost_usd == pytest.approx(0.003)
    assert audio.metrics.outcomes == {("whisper-1", "done"): 1}


async def test_an_account_disabled_after_the_upload_fails_the_file_and_records_nothing(
    audio: Audio,
) -> None:
    attachment = await audio.upload(WAV)
    await audio.change_owner(attachment, disabled=True)
    job = ExtractAttachment(attachment_id=attachment.id)

    await audio.handler().execute(job)
    await audio.handler().execute(job)  # delivered again: nothing more happens

    stored = await audio.read(attachment.id)
    assert (stored.status, stored.failure_reason) == (
        AttachmentStatus.FAILED,
        "This account is disabled.",
    )
    assert audio.transcriber.calls == []
    assert audio.usage() == []
    assert audio.metrics.outcomes == {("whisper-1", "refused"): 1}
