"""Hunt S23 of voice transcription in the worker: a WAV file uploaded over HTTP to the app on the
embedded Postgres, Redis and S3, transcribed by the production worker (``whalli worker``, its own
process) through the loopback speech-to-text server of ``tests.support.fake_transcription`` (the
real multipart wire protocol). What a transcript Postgres cannot hold does, what a provider's
Retry-After does to the queue's retries, and a file deleted while it is being transcribed."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from dramatiq.middleware import TimeLimit

from tests.integration.test_extraction_worker import FAST_RECOVERY, Worker, eventually
from tests.integration.test_title_worker import worker_env
from tests.integration.test_transcription_worker import (
    WAV,
    WORKER_LIMIT,
    Voice,
    queue_name,  # noqa: F401  (fixture)
    voice,  # noqa: F401  (fixture)
)
from tests.support.fake_transcription import (
    API_KEY,
    TRANSCRIPT,
    Answer,
    FakeTranscriptionServer,
    RecordedTranscription,
    openai_error,
)
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.system.clock import SystemClock
from whalli.config import ConfigError, load_settings
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.model.transcriptions import TranscriptionStatus
from whalli.domain.services.files.requeue_stale import GAVE_UP, RequeueStaleAttachments
from whalli.entrypoints.worker.main import broker_for

# older than any row of the shared database's other tests (some use a clock in 1456): the
# sweeper below, one row at a time, claims this test's row and no one else's
LONG_AGO = datetime(1, 1, 2, tzinfo=UTC)


MAX_CHARS = 2_000  # the worker's cap on a file's stored text


class TimedServer(FakeTranscriptionServer):
    """The fake speech-to-text server, noting when each request came and able to hold its
    answers until released (``hold``)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def answer(self, request: RecordedTranscription) -> Answer:
        self.times.append(time.monotonic())
        self.arrived.set()
        self.release.wait(120)
        return super().answer(request)


@pytest.fixture
def speech() -> Iterator[TimedServer]:
    server = TimedServer().start()
    yield server
    server.release.set()
    server.stop()


def _worker_env(
    speech_url: str, stack_urls: StackUrls, queue: str, unique: str, tmp_path: Path,
    **extra: str,
) -> dict[str, str]:  # fmt: skip
    env = worker_env(
        stack_urls, queue_name=queue, bucket=f"voice-{unique}",
        provider_url="http://127.0.0.1:9/v1", tmp_path=tmp_path,
    )  # fmt: skip
    env.update(
        WHALLI_TRANSCRIPTION_BASE_URL=speech_url,
        WHALLI_TRANSCRIPTION_API_KEY=API_KEY,
        WHALLI_TRANSCRIPTION_MAX_BYTES=str(WORKER_LIMIT),
        WHALLI_WORKER_THREADS="1",
        WHALLI_EXTRACTION_MAX_CHARS=str(MAX_CHARS),
        **extra,
    )
    return env


@pytest.fixture
def worker(
    voice: Voice,  # noqa: F811
    stack_urls: StackUrls,
    queue_name: str,  # noqa: F811
    unique: str,
    tmp_path: Path,
) -> Iterator[Worker]:
    """The production worker, one job at a time (so that jobs end in the order they came)."""
    env = _worker_env(voice.speech.base_url, stack_urls, queue_name, unique, tmp_path)
    started = Worker(env, tmp_path, tmp_path / "worker.log")
    yield started
    started.close()


async def test_a_transcript_holding_a_nul_is_stored_without_it_and_asked_for_once(
    voice: Voice,  # noqa: F811
    worker: Worker,
) -> None:
    voice.speech.script(Answer(200, {"text": "Call Ada\u0000 at nine."}))

    uploaded = await voice.upload(WAV)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]

    async def ended_or_retried() -> object:
        body = await voice.file(file_id)
        if body["status"] in ("done", "failed") or len(voice.speech.requests) > 1:
            return body
        return None

    body = await eventually(ended_or_retried, worker)

    # not asked again (and paid again) for the same audio
    assert len(voice.speech.requests) == 1, worker.log()[-3000:]
    assert body["status"] == "done", body
    assert "\x00" not in body["textPreview"]
    assert body["textPreview"].startswith("Call Ada")
    row = await voice.transcription(file_id)
    assert row is not None
    assert row.text is not None
    assert "\x00" not in row.text


async def test_the_queue_waits_the_retry_after_of_a_rate_limited_provider(
    voice: Voice,  # noqa: F811
    worker: Worker,
) -> None:
    # the test worker retries within 10-50 ms; the provider asked for 2 s
    voice.speech.script(Answer(429, openai_error("Rate limit reached"), {"retry-after": "2"}))

    uploaded = await voice.upload(WAV)
    body = await voice.final(uploaded.json()["id"], worker)

    assert (body["status"], body["textPreview"]) == ("done", TRANSCRIPT)
    speech = voice.speech
    assert isinstance(speech, TimedServer)
    assert len(speech.times) == 2
    assert speech.times[1] - speech.times[0] >= 2.0, "asked again before its Retry-After"


async def test_a_file_deleted_while_it_is_transcribed_stays_deleted(
    voice: Voice,  # noqa: F811
    worker: Worker,
    tmp_path: Path,
) -> None:
    speech = voice.speech
    assert isinstance(speech, TimedServer)
    speech.release.clear()
    uploaded = await voice.upload(WAV)
    file_id = uploaded.json()["id"]

    async def arrived() -> bool:
        return speech.arrived.is_set()

    await eventually(arrived, worker)
    deleted = await voice.client.delete(f"/api/files/{file_id}", headers=voice.auth)
    assert deleted.status_code == 204, deleted.text
    speech.release.set()

    # a second file, after the first: once it is done, the first job has ended too
    second = await voice.upload(WAV + b"\x00\x00")
    body = await voice.final(second.json()["id"], worker)
    assert body["status"] == "done", body

    gone = await voice.client.get(f"/api/files/{file_id}", headers=voice.auth)
    assert gone.status_code == 404, gone.text
    assert await voice.transcription(file_id) is None
    listed = await voice.client.get("/api/files", headers=voice.auth)
    assert [f["id"] for f in listed.json()["items"]] == [second.json()["id"]]
    assert worker.alive()
    assert "Traceback" not in worker.log()


async def test_a_transcription_given_up_by_the_sweeper_ends_failed_with_its_file(
    voice: Voice,  # noqa: F811
    migrated_database_url: str,
) -> None:
    # the provider is down: the job's transcription raises, as a job whose retries ran out
    voice.speech.script(Answer(503, openai_error("The server is overloaded")))
    uploaded = await voice.upload(WAV)
    file_id = uuid.UUID(uploaded.json()["id"])
    extract = await resolved(voice.container.services.extract_attachment())
    with pytest.raises(ServiceUnavailable):
        await extract.execute(ExtractAttachment(attachment_id=file_id))
    row = await voice.transcription(str(file_id))
    assert row is not None
    assert row.status is TranscriptionStatus.PROCESSING
    # ... long ago: the oldest stale row of the shared database, the only one claimed below
    async with await psycopg.AsyncConnection.connect(migrated_database_url) as conn:
        await conn.execute(
            "UPDATE attachments SET created_at = %(t)s, updated_at = %(t)s, requeued_at = NULL "
            "WHERE id = %(id)s",
            {"t": LONG_AGO, "id": file_id},
        )
    now = datetime.now(UTC)
    sweeper = RequeueStaleAttachments(
        await resolved(voice.container.adapters.unit_of_work()),
        await resolved(voice.container.adapters.job_queue()),
        SystemClock(),
        older_than=now - LONG_AGO,  # no pending file of anyone else's
        batch=1,
    )

    try:
        queued = await sweeper.execute()
        file = await voice.file(str(file_id))
        row = await voice.transcription(str(file_id))
    finally:  # no row of this age is left for another test's sweeper
        await voice.client.delete(f"/api/files/{file_id}", headers=voice.auth)

    assert (file["status"], file["failureReason"], queued) == ("failed", GAVE_UP, 0)
    assert row is not None
    assert row.status is TranscriptionStatus.FAILED


def test_a_transcription_timeout_the_settings_accept_fits_in_the_workers_job_time_limit(
    stack_urls: StackUrls,
) -> None:
    env = {
        "WHALLI_ENV": "test",
        "WHALLI_DATABASE_URL": stack_urls.database_url,
        "WHALLI_REDIS_URL": stack_urls.redis_url,
        "WHALLI_TRANSCRIPTION_BASE_URL": "http://127.0.0.1:9/v1",
        "WHALLI_TRANSCRIPTION_TIMEOUT_S": "1800",  # a long file on a self-hosted CPU server
        "WHALLI_EXTRACTION_PROCESSING_STALE_AFTER_S": "3700",
    }
    try:
        settings = load_settings(env, dotenv=None)
    except ConfigError:
        return  # refused at start-up: fine
    broker = broker_for(settings)
    [limit] = [m for m in broker.middleware if isinstance(m, TimeLimit)]

    assert limit.time_limit >= settings.transcription_timeout_s * 1000


async def test_a_worker_killed_mid_transcription_is_taken_over_leaving_one_row_and_no_file(
    voice: Voice,  # noqa: F811
    stack_urls: StackUrls,
    queue_name: str,  # noqa: F811
    unique: str,
    tmp_path: Path,
    migrated_database_url: str,
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    env = _worker_env(
        voice.speech.base_url, stack_urls, queue_name, unique, tmp_path,
        WHALLI_EXTRACTION_TEMP_DIR=str(spool), **FAST_RECOVERY,
    )  # fmt: skip
    speech = voice.speech
    assert isinstance(speech, TimedServer)
    speech.release.clear()
    first = Worker(env, tmp_path, tmp_path / "first.log")
    second: Worker | None = None
    try:
        uploaded = await voice.upload(WAV)
        file_id = uploaded.json()["id"]

        async def arrived() -> bool:
            return speech.arrived.is_set()

        await eventually(arrived, first)
        first.kill()  # mid-transcription
        speech.release.set()
        second = Worker(env, tmp_path, tmp_path / "second.log")
        body = await voice.final(file_id, second)
    finally:
        first.close()
        if second is not None:
            second.close()

    assert (body["status"], body["textPreview"]) == ("done", TRANSCRIPT)
    async with await psycopg.AsyncConnection.connect(migrated_database_url) as conn:
        cursor = await conn.execute(
            "SELECT status FROM transcriptions WHERE attachment_id = %s", (uuid.UUID(file_id),)
        )
        assert [r[0] for r in await cursor.fetchall()] == ["done"]
    assert list(spool.iterdir()) == []


async def test_a_refusal_quoting_the_key_fails_the_file_without_the_key_anywhere(
    voice: Voice,  # noqa: F811
    worker: Worker,
) -> None:
    said = f"Invalid file: request signed {API_KEY} holds no audio stream"
    voice.speech.script(Answer(400, openai_error(said)))

    uploaded = await voice.upload(WAV)
    body = await voice.final(uploaded.json()["id"], worker)

    assert body["status"] == "failed"
    assert "no audio stream" in body["failureReason"]
    assert API_KEY not in body["failureReason"]
    row = await voice.transcription(uploaded.json()["id"])
    assert row is not None
    assert row.failure_reason == body["failureReason"]
    assert API_KEY not in worker.log()
    assert len(voice.speech.requests) == 1


async def test_a_provider_answering_html_fails_the_file_once_naming_the_base_url(
    voice: Voice,  # noqa: F811
    worker: Worker,
) -> None:
    page = Answer(
        200, b"<html><body>Welcome to nginx!</body></html>", {"content-type": "text/html"}
    )
    voice.speech.script(page)

    uploaded = await voice.upload(WAV)
    body = await voice.final(uploaded.json()["id"], worker)

    assert body["status"] == "failed"
    assert "base URL" in body["failureReason"]
    assert len(voice.speech.requests) == 1


async def test_a_transcript_of_megabytes_is_stored_capped_in_the_file_and_its_row(
    voice: Voice,  # noqa: F811
    worker: Worker,
) -> None:
    voice.speech.script(Answer(200, {"text": "minutes " * 250_000}))  # 2 MB

    uploaded = await voice.upload(WAV)
    body = await voice.final(uploaded.json()["id"], worker)

    assert body["status"] == "done", body
    assert body["truncated"] is True
    row = await voice.transcription(uploaded.json()["id"])
    assert row is not None
    assert row.text is not None
    assert len(row.text) == MAX_CHARS
