"""What transcriptions cost, on real Postgres, Redis and S3 with a fake OpenAI speech-to-text
server on loopback (the real multipart protocol, OpenAI's documented ``usage``): the production
worker records one usage row per transcribed file (a job delivered twice too),
``/v1/audio/transcriptions`` one per call, ``/api/usage`` (and the admin's view of it) shows
their cost and seconds of audio, and a transcription model above the caller's plan is refused
at upload, on /v1 and by the job of a file uploaded before the plan was lowered. Waits are
bounded; nothing asserts how long anything took."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from redis.asyncio import Redis

from tests.integration.http.test_identity_end_to_end import PASSWORD
from tests.integration.test_extraction_worker import Worker
from tests.integration.test_transcription_worker import (  # noqa: F401  (the fixtures)
    WAV,
    Voice,
    _voice,
    queue_name,
    speech,
    voice,
    worker,
)
from tests.support.fake_transcription import (
    API_KEY,
    TOKENS_USAGE,
    FakeTranscriptionServer,
    tiny_wav,
)
from tests.support.resolve import resolved
from whalli.adapters.catalog.toml_catalog import default_catalog_path
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.jobs import ExtractAttachment
from whalli.domain.services.auth.create_user import CreateUser, CreateUserHandler
from whalli.domain.services.files.extract_attachment import ExtractAttachmentHandler

# three seconds of audio at 8 kHz: whisper-1 bills 3/60 of $0.006
THREE_SECONDS = tiny_wav(frames=24_000)


async def usage(app: Voice, auth: dict[str, str] | None = None, path: str = "") -> Any:
    response = await app.client.get(path or "/api/usage", headers=auth or app.auth)
    assert response.status_code == 200, response.text
    return response.json()


async def sdk_transcribe(app: Voice, model: str, data: bytes = WAV) -> str:
    base_url = f"{app.client.base_url}".rstrip("/") + "/v1"
    async with openai.AsyncOpenAI(base_url=base_url, api_key=app.api_key, max_retries=0) as sdk:
        result = await sdk.audio.transcriptions.create(model=model, file=("memo.wav", data))
    return result.text


async def test_a_worker_transcription_is_one_usage_row_priced_by_the_seconds_it_said(
    voice: Voice,  # noqa: F811
    worker: Worker,  # noqa: F811
) -> None:
    voice.speech.seconds = 90.0  # what OpenAI said whisper-1 heard: a minute and a half

    uploaded = await voice.upload(WAV)
    assert uploaded.status_code == 201, uploaded.text
    assert (await voice.final(uploaded.json()["id"], worker))["status"] == "done"

    body = await usage(voice)
    assert body["total"]["requests"] == 1
    assert body["total"]["audioSeconds"] == 90.0
    assert body["total"]["costUsd"] == pytest.approx(0.009)  # 1.5 minutes at $0.006
    [model] = body["byModel"]
    assert (model["model"], model["provider"], model["promptTokens"]) == (
        "whisper-1", "openai", 0,
    )  # fmt: skip
    assert body["byDay"][-1]["audioSeconds"] == 90.0


async def test_a_transcription_job_delivered_twice_records_its_usage_once(
    voice: Voice,  # noqa: F811
) -> None:
    """At-least-once delivery on the API process's own handlers (real Postgres row locks): a
    first delivery is held while the provider answers it; a second takes the work over and ends
    it; the first then finds the file done; a third, later, does nothing. Two transcriptions
    were made, one usage recorded."""
    uploaded = await voice.upload(THREE_SECONDS)  # queued to a queue no worker reads here
    assert uploaded.status_code == 201, uploaded.text
    job = ExtractAttachment(attachment_id=uuid.UUID(uploaded.json()["id"]))

    async def deliver() -> None:
        handler: ExtractAttachmentHandler = await resolved(
            voice.container.services.extract_attachment()
        )
        await handler.execute(job)

    gate = voice.speech.hold()
    first = asyncio.create_task(deliver())
    for _ in range(600):  # until the held request has arrived (at most 30 s)
        if voice.speech.requests or first.done():
            break
        await asyncio.sleep(0.05)
    assert len(voice.speech.requests) == 1
    await deliver()  # the redelivery, while the first waits for its answer
    gate.set()
    await first
    await deliver()

    assert (await voice.file(uploaded.json()["id"]))["status"] == "done"
    assert len(voice.speech.requests) == 2
    body = await usage(voice)
    assert body["total"]["requests"] == 1
    assert body["total"]["audioSeconds"] == pytest.approx(3.0)
    assert body["total"]["costUsd"] == pytest.approx(0.0003)  # 3/60 of $0.006


async def test_v1_transcriptions_record_one_usage_each_and_the_admin_sees_them(
    voice: Voice,  # noqa: F811
) -> None:
    assert await sdk_transcribe(voice, "whisper-1", THREE_SECONDS)
    assert await sdk_transcribe(voice, "whisper-1", THREE_SECONDS)

    body = await usage(voice)
    assert body["total"]["requests"] == 2
    assert body["total"]["audioSeconds"] == pytest.approx(6.0)
    assert body["total"]["costUsd"] == pytest.approx(0.0006)
    admin = await _admin(voice)
    seen = await usage(voice, admin, f"/api/admin/users/{voice.user_id}/usage")
    assert seen["total"] == body["total"]


async def test_a_token_billed_model_records_its_tokens_and_the_wavs_duration(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    speech: FakeTranscriptionServer,  # noqa: F811
) -> None:  # fmt: skip
    async with _transcribing(
        stack_urls, unique, speech, WHALLI_TRANSCRIPTION_MODEL="gpt-4o-transcribe"
    ) as app:
        assert await sdk_transcribe(app, "gpt-4o-transcribe", THREE_SECONDS)

        body = await usage(app)
    [request] = speech.requests
    assert request.fields["model"] == "gpt-4o-transcribe"
    [model] = body["byModel"]
    assert (model["model"], model["provider"]) == ("gpt-4o-transcribe", "openai")
    details = TOKENS_USAGE["input_token_details"]
    assert (model["promptTokens"], model["completionTokens"]) == (
        TOKENS_USAGE["input_tokens"], TOKENS_USAGE["output_tokens"],
    )  # fmt: skip
    expected = (
        details["text_tokens"] * 2.50 + details["audio_tokens"] * 6.00
        + TOKENS_USAGE["output_tokens"] * 10.00
    ) / 1_000_000  # fmt: skip
    assert model["costUsd"] == pytest.approx(expected)
    assert model["audioSeconds"] == pytest.approx(3.0)  # not said: read from the WAV header


async def test_a_transcription_model_above_the_callers_plan_is_refused_and_nothing_stored(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    speech: FakeTranscriptionServer, tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    catalog = _pro_whisper_catalog(tmp_path)
    async with _transcribing(stack_urls, unique, speech, WHALLI_CATALOG_PATH=str(catalog)) as app:
        refused = await app.upload(WAV)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "model_not_in_plan"
        assert "whisper-1" in refused.json()["detail"]
        listed = await app.client.get("/api/files", headers=app.auth)
        assert listed.json()["items"] == []
        text = await app.upload(b"Meeting notes, not audio.\n", "notes.txt")
        assert text.status_code == 201, text.text

        with pytest.raises(openai.PermissionDeniedError, match="needs pro") as caught:
            await sdk_transcribe(app, "whisper-1")
        assert caught.value.code == "model_not_in_plan"

        admin = await _admin(app)
        raised = await app.client.patch(
            f"/api/admin/users/{app.user_id}", json={"plan": "pro"}, headers=admin
        )
        assert raised.status_code == 200, raised.text
        assert await sdk_transcribe(app, "whisper-1")
        assert (await app.upload(WAV)).status_code == 201
    assert len(speech.requests) == 1  # the refused ones never reached the provider


async def test_a_plan_lowered_between_upload_and_job_fails_the_file_and_charges_nothing(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    speech: FakeTranscriptionServer, tmp_path: Path,  # noqa: F811
) -> None:  # fmt: skip
    async with _transcribing(
        stack_urls, unique, speech, WHALLI_CATALOG_PATH=str(_pro_whisper_catalog(tmp_path))
    ) as app:
        admin = await _admin(app)
        await _set_plan(app, admin, "pro")
        uploaded = await app.upload(WAV)  # queued to a queue no worker reads here
        assert uploaded.status_code == 201, uploaded.text
        await _set_plan(app, admin, "free")  # lowered before the job runs
        handler: ExtractAttachmentHandler = await resolved(
            app.container.services.extract_attachment()
        )
        await handler.execute(ExtractAttachment(attachment_id=uuid.UUID(uploaded.json()["id"])))

        file = await app.file(uploaded.json()["id"])
        body = await usage(app)
    assert file["status"] == "failed"
    assert file["failureReason"] == (
        "Your plan (free) does not include the transcription model whisper-1; it needs pro."
    )
    assert speech.requests == []
    assert body["total"]["requests"] == 0


async def _set_plan(app: Voice, admin: dict[str, str], plan: str) -> None:
    changed = await app.client.patch(
        f"/api/admin/users/{app.user_id}", json={"plan": plan}, headers=admin
    )
    assert changed.status_code == 200, changed.text


def _pro_whisper_catalog(tmp_path: Path) -> Path:
    """The shipped catalog with whisper-1 for the pro plan and above."""
    shipped = default_catalog_path().read_text()
    free = '[[transcription]]\nid = "whisper-1"\nprovider = "openai"\nmin_plan = "free"\n'
    assert free in shipped
    catalog = tmp_path / "models.toml"
    catalog.write_text(shipped.replace(free, free.replace('"free"', '"pro"')))
    return catalog


@asynccontextmanager
async def _transcribing(
    urls: StackUrls, unique: str, server: FakeTranscriptionServer, **overrides: str
) -> AsyncIterator[Voice]:
    """The app with transcription by ``server`` (no worker: the queue is this test's own, and
    emptied after it)."""
    queue = f"voice-usage-{unique}"
    try:
        async with _voice(
            urls, unique, server, WHALLI_QUEUE_NAME=queue,
            WHALLI_TRANSCRIPTION_BASE_URL=server.base_url, WHALLI_TRANSCRIPTION_API_KEY=API_KEY,
            **overrides,
        ) as app:  # fmt: skip
            yield app
    finally:
        async with Redis.from_url(urls.redis_url) as client:
            async for key in client.scan_iter(match=f"{queue}:*"):
                await client.delete(key)


async def _admin(app: Voice) -> dict[str, str]:
    handler: CreateUserHandler = await resolved(app.container.services.create_user())
    email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
    await handler.execute(CreateUser(email=email, password=PASSWORD, admin=True))
    response = await app.client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['accessToken']}"}
