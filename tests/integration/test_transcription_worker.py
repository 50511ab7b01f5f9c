"""Voice transcription end to end: a WAV file uploaded over HTTP to the app on real Postgres,
Redis and S3; the production worker (``whalli worker``, its own process, same queue) sends it to
a fake OpenAI speech-to-text server on loopback (the real multipart wire protocol) and the
transcript becomes the file's text, with a transcription row. Also the failures (a refused
file, a provider down for a while, a file too large, no transcription configured) and
``/v1/audio/transcriptions`` through the official ``openai`` SDK. Waits are bounded; nothing
asserts how long anything took."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from redis.asyncio import Redis

from tests.integration.http.test_files import form, multipart
from tests.integration.http.test_identity_end_to_end import _settings
from tests.integration.http.test_openai_sdk_end_to_end import _api_key
from tests.integration.test_extraction_worker import Worker, eventually
from tests.integration.test_title_worker import worker_env
from tests.support.fake_transcription import (
    API_KEY,
    TRANSCRIPT,
    Answer,
    FakeTranscriptionServer,
    openai_error,
    tiny_wav,
)
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import Container, build_container
from whalli.domain.model.transcriptions import Transcription, TranscriptionStatus
from whalli.entrypoints.http.asgi import build_app

WAV = tiny_wav()
# the worker's limit: a WAV file of 5,000 samples (10 KB) is over it, WAV is well within
WORKER_LIMIT = 6_000


@dataclass
class Voice:
    client: httpx.AsyncClient
    container: Container
    speech: FakeTranscriptionServer
    auth: dict[str, str]
    api_key: str
    user_id: uuid.UUID

    async def upload(self, data: bytes, name: str = "memo.wav") -> httpx.Response:
        return await self.client.post(
            "/api/files/upload", content=form(data, name), headers={**self.auth, **multipart()}
        )

    async def file(self, file_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/files/{file_id}", headers=self.auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def final(self, file_id: str, worker: Worker) -> dict[str, Any]:
        async def ended() -> dict[str, Any] | None:
            body = await self.file(file_id)
            return body if body["status"] in ("done", "failed") else None

        found: dict[str, Any] = await eventually(ended, worker)
        return found

    async def transcription(self, file_id: str) -> Transcription | None:
        uow = await resolved(self.container.adapters.unit_of_work())
        async with uow:
            found: Transcription | None = await uow.transcriptions.get_for_attachment(
                uuid.UUID(file_id)
            )
        return found


@pytest.fixture
def queue_name(unique: str) -> str:
    return f"voice-test-{unique}"


@pytest.fixture
def speech() -> Iterator[FakeTranscriptionServer]:
    server = FakeTranscriptionServer().start()
    yield server
    server.stop()


@asynccontextmanager
async def _voice(
    urls: StackUrls, unique: str, speech: FakeTranscriptionServer, **overrides: str
) -> AsyncIterator[Voice]:
    settings = _settings(urls, unique, WHALLI_S3_BUCKET=f"voice-{unique}", **overrides)
    container = build_container(settings)
    async with live_server(build_app(settings, container)) as client:
        api_key, user_id = await _api_key(client)
        auth = {"Authorization": f"Bearer {api_key}"}
        yield Voice(client, container, speech, auth, api_key, user_id)


@pytest.fixture
async def voice(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, queue_name: str,
    speech: FakeTranscriptionServer,
) -> AsyncIterator[Voice]:  # fmt: skip
    transcription = {
        "WHALLI_TRANSCRIPTION_BASE_URL": speech.base_url,
        "WHALLI_TRANSCRIPTION_API_KEY": API_KEY,
    }
    async with _voice(
        stack_urls, unique, speech, WHALLI_QUEUE_NAME=queue_name, **transcription
    ) as found:
        yield found
    async with Redis.from_url(stack_urls.redis_url) as client:
        async for key in client.scan_iter(match=f"{queue_name}:*"):
            await client.delete(key)


@pytest.fixture
def worker(
    voice: Voice, stack_urls: StackUrls, queue_name: str, unique: str, tmp_path: Path
) -> Iterator[Worker]:
    env = worker_env(
        stack_urls, queue_name=queue_name, bucket=f"voice-{unique}",
        provider_url="http://127.0.0.1:9/v1", tmp_path=tmp_path,
    )  # fmt: skip
    env.update(
        WHALLI_TRANSCRIPTION_BASE_URL=voice.speech.base_url,
        WHALLI_TRANSCRIPTION_API_KEY=API_KEY,
        WHALLI_TRANSCRIPTION_MAX_BYTES=str(WORKER_LIMIT),
    )
    started = Worker(env, tmp_path, tmp_path / "worker.log")
    yield started
    started.close()


async def test_an_uploaded_wav_is_transcribed_by_the_worker_into_its_text_and_a_row(
    voice: Voice, worker: Worker
) -> None:
    voice.speech.texts[WAV] = "Pick up the prototypes from the lab."

    uploaded = await voice.upload(WAV)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    assert uploaded.json()["contentType"] == "audio/wav"

    body = await voice.final(file_id, worker)
    assert body["status"] == "done", body
    assert body["textPreview"] == "Pick up the prototypes from the lab."
    [request] = voice.speech.requests
    assert request.fields == {"model": "whisper-1", "response_format": "json"}
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.file is not None
    assert (request.file.filename, request.file.data) == ("audio.wav", WAV)
    row = await voice.transcription(file_id)
    assert row is not None
    assert (row.status, row.text) == (TranscriptionStatus.DONE, body["textPreview"])
    assert row.user_id == voice.user_id
    assert API_KEY not in worker.log()


async def test_audio_the_provider_refuses_fails_with_its_reason_and_is_not_retried(
    voice: Voice, worker: Worker
) -> None:
    voice.speech.script(Answer(400, openai_error("Audio file might be corrupted")))

    uploaded = await voice.upload(WAV)
    body = await voice.final(uploaded.json()["id"], worker)

    assert body["status"] == "failed"
    assert "Audio file might be corrupted" in body["failureReason"]
    assert len(voice.speech.requests) == 1
    row = await voice.transcription(uploaded.json()["id"])
    assert row is not None
    assert row.status is TranscriptionStatus.FAILED


async def test_a_provider_down_for_a_while_is_retried_by_the_queue_until_done(
    voice: Voice, worker: Worker
) -> None:
    down = Answer(503, openai_error("The server is overloaded"))
    voice.speech.script(down, down)

    uploaded = await voice.upload(WAV)
    body = await voice.final(uploaded.json()["id"], worker)

    assert (body["status"], body["textPreview"]) == ("done", TRANSCRIPT)
    assert len(voice.speech.requests) == 3
    row = await voice.transcription(uploaded.json()["id"])
    assert row is not None
    assert (row.status, row.text) == (TranscriptionStatus.DONE, TRANSCRIPT)


async def test_audio_over_the_transcription_limit_fails_without_reaching_the_provider(
    voice: Voice, worker: Worker
) -> None:
    uploaded = await voice.upload(tiny_wav(frames=5_000))
    body = await voice.final(uploaded.json()["id"], worker)

    assert body["status"] == "failed"
    assert body["failureReason"] == (
        f"the audio file is larger than the transcription limit of {WORKER_LIMIT} bytes"
    )
    assert voice.speech.requests == []


async def test_without_transcription_configured_an_audio_upload_is_a_422_and_nothing_stored(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    speech: FakeTranscriptionServer,
) -> None:  # fmt: skip
    async with _voice(stack_urls, unique, speech, WHALLI_OPENAI_API_KEY="") as off:
        refused = await off.upload(WAV)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "transcription_not_configured"
        assert refused.json()["detail"] == "voice transcription is not configured on this server"
        listed = await off.client.get("/api/files", headers=off.auth)
        assert listed.json()["items"] == []
        text = await off.upload(b"Meeting notes, not audio.\n", "notes.txt")
        assert text.status_code == 201, text.text


async def test_the_openai_sdk_transcribes_through_v1_synchronously(
    voice: Voice, tmp_path: Path
) -> None:
    voice.speech.texts[WAV] = "Order more coffee."
    path = tmp_path / "memo.wav"
    path.write_bytes(WAV)
    base_url = f"{voice.client.base_url}".rstrip("/") + "/v1"

    async with openai.AsyncOpenAI(base_url=base_url, api_key=voice.api_key, max_retries=0) as sdk:
        with path.open("rb") as audio:
            result = await sdk.audio.transcriptions.create(
                model="whisper-1", file=audio, language="en"
            )
        assert result.text == "Order more coffee."
        with path.open("rb") as audio:
            text = await sdk.audio.transcriptions.create(
                model="whisper-1", file=audio, response_format="text"
            )
        assert text.strip() == "Order more coffee."
        with pytest.raises(openai.BadRequestError, match="response_format"):
            await sdk.audio.transcriptions.create(
                model="whisper-1", file=("memo.wav", WAV), response_format="srt"
            )
        voice.speech.script(Answer(400, openai_error("Audio file is too short")))
        with pytest.raises(openai.BadRequestError, match="too short"):
            await sdk.audio.transcriptions.create(model="whisper-1", file=("memo.wav", WAV))

    assert [r.fields.get("language") for r in voice.speech.requests] == ["en", None, None]
    # nothing stored: no file in the caller's project
    listed = await voice.client.get("/api/files", headers=voice.auth)
    assert listed.json()["items"] == []


async def test_a_start_without_text_sends_the_recordings_transcript_as_the_message(
    voice: Voice, worker: Worker
) -> None:
    """A voice message (the seed's flow: the transcript becomes a chat message): the start
    names the recording and no text; it waits for the transcript as for any file's text, the
    transcript is the message (and the new chat's title) and the reply answers it."""
    voice.speech.texts[WAV] = "Summarize the launch plan for me."
    uploaded = await voice.upload(WAV)
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]

    started = await voice.client.post(
        "/api/chat/start",
        json={"model": "dev/echo", "attachmentIds": [file_id]},
        headers=voice.auth,
    )
    assert started.status_code == 201, started.text
    assert (await voice.final(file_id, worker))["status"] == "done"
    chat = await voice.client.get(f"/api/chats/{started.json()['chatId']}", headers=voice.auth)
    assert chat.status_code == 200, chat.text
    body = chat.json()
    assert body["title"] == "Summarize the launch plan for me."
    question = next(m for m in body["messages"] if m["id"] == started.json()["messageId"])
    assert question["content"] == "Summarize the launch plan for me."
    assert question.get("attachmentIds", []) == []  # its words reach the model once

    no_text = await voice.client.post(
        "/api/chat/start", json={"model": "dev/echo"}, headers=voice.auth
    )
    assert no_text.status_code == 422, no_text.text
    assert no_text.json()["field"] == "message"
