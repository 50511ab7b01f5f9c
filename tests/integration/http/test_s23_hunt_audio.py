"""Hunt S23 of ``POST /v1/audio/transcriptions``, end to end: the real app on the embedded
Postgres, Redis and S3, served over loopback HTTP, and the loopback speech-to-text server of
``tests.support.fake_transcription`` speaking OpenAI's multipart wire protocol (it refuses a
file whose name has no audio extension, as OpenAI does). What a hostile or unusual file, a
hostile file name, a provider answering garbage or 429, and a broken upload do; and that the
temporary file the audio is spooled to is always removed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.integration.http.test_files import form, multipart
from tests.integration.test_transcription_worker import (
    WAV,
    Voice,
    _voice,
    queue_name,  # noqa: F401  (fixture)
    speech,  # noqa: F401  (fixture)
)
from tests.support.fake_providers import API_KEY as PROVIDER_KEY
from tests.support.fake_providers import FakeProviderServer, openai_default
from tests.support.fake_transcription import (
    API_KEY,
    SUPPORTED,
    TRANSCRIPT,
    Answer,
    FakeTranscriptionServer,
    openai_error,
)
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.jobs import ExtractAttachment

BOUNDARY = "s23-audio-boundary"
MODEL = "openai/gpt-4o-mini"
ROUTE = "/v1/audio/transcriptions"
WAIT_S = 60  # a bound on a wait, not a speed assertion


def _ebml(doctype: bytes) -> bytes:
    """The start of a Matroska/WebM file: an EBML header naming its DocType, then padding."""
    doc = b"\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    header = b"\x42\x86\x81\x01" + doc
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(header)]) + header + b"\x00" * 512


MKA = _ebml(b"matroska")
WEBM = _ebml(b"webm")


def body(
    data: bytes, *, filename: str = "memo.wav", fields: dict[str, str] | None = None,
    content_type: str = "audio/wav",
) -> bytes:  # fmt: skip
    """The multipart form OpenAI's SDK sends: the file part first, then the fields."""
    quoted = filename.replace('"', "%22").encode()
    out = (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + quoted
        + b'"\r\n'
        + f"Content-Type: {content_type}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    for name, value in (fields if fields is not None else {"model": "whisper-1"}).items():
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def headers(voice: Voice) -> dict[str, str]:
    return {**voice.auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def transcribe(voice: Voice, content: Any) -> httpx.Response:
    return await voice.client.post(ROUTE, content=content, headers=headers(voice))


def error(response: httpx.Response) -> dict[str, Any]:
    found: dict[str, Any] = response.json()["error"]
    return found


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    found = tmp_path / "spool"
    found.mkdir()
    return found


@pytest.fixture
async def provider() -> AsyncIterator[FakeProviderServer]:
    """The chat model's provider (OpenAI's wire protocol), for chats with a voice memo."""
    async with FakeProviderServer(openai_default()) as server:
        yield server


@pytest.fixture
async def voice(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, queue_name: str,  # noqa: F811
    speech: FakeTranscriptionServer, spool: Path, provider: FakeProviderServer,  # noqa: F811
) -> AsyncIterator[Voice]:  # fmt: skip
    overrides = {
        "WHALLI_OPENAI_API_KEY": PROVIDER_KEY,
        "WHALLI_OPENAI_BASE_URL": provider.url,
        "WHALLI_TRANSCRIPTION_BASE_URL": speech.base_url,
        "WHALLI_TRANSCRIPTION_API_KEY": API_KEY,
        "WHALLI_TRANSCRIPTION_MAX_BYTES": "20000",
        "WHALLI_EXTRACTION_TEMP_DIR": str(spool),
        "WHALLI_QUEUE_NAME": queue_name,
    }
    async with _voice(stack_urls, unique, speech, **overrides) as found:
        yield found
    async with Redis.from_url(stack_urls.redis_url) as client:
        async for key in client.scan_iter(match=f"{queue_name}:*"):
            await client.delete(key)


# --- formats -----------------------------------------------------------------------------


async def test_matroska_audio_is_never_sent_under_an_extension_openai_refuses(
    voice: Voice,
) -> None:
    response = await transcribe(
        voice, body(MKA, filename="memo.mka", content_type="audio/x-matroska")
    )

    sent = [r.file.filename for r in voice.speech.requests if r.file is not None]
    assert all(name.rpartition(".")[2] in SUPPORTED for name in sent), sent
    # transcribed, or refused as unsupported before the provider is paid to look at it
    assert response.status_code in (200, 415), response.text


async def test_webm_audio_is_sent_as_webm_and_transcribed(voice: Voice) -> None:
    response = await transcribe(voice, body(WEBM, filename="rec", content_type="audio/webm"))

    assert response.status_code == 200, response.text
    assert response.json() == {"text": TRANSCRIPT}
    [request] = voice.speech.requests
    assert request.file is not None
    assert (request.file.filename, request.file.content_type) == ("audio.webm", "audio/webm")


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04" + b"\x00" * 200, b"fLaC\x00\x00\x00\x22" + b"\x00" * 200],
    ids=["zip", "flac"],
)
async def test_a_file_refused_by_type_names_the_file_param(voice: Voice, data: bytes) -> None:
    response = await transcribe(voice, body(data))

    assert response.status_code == 415, response.text
    assert (error(response)["code"], error(response)["param"]) == ("unsupported_file_type", "file")
    assert voice.speech.requests == []


async def test_an_empty_file_is_refused_before_the_provider(voice: Voice) -> None:
    response = await transcribe(voice, body(b""))

    assert 400 <= response.status_code < 500, response.text
    assert "empty" in error(response)["message"].lower()
    assert voice.speech.requests == []


# --- hostile names -----------------------------------------------------------------------


async def test_the_clients_file_name_never_reaches_the_provider(voice: Voice) -> None:
    hostile = "../../etc/passwd\r\nX-Injected: 1\x07.wav"
    response = await transcribe(voice, body(WAV, filename=hostile, content_type="text/html"))

    assert response.status_code == 200, response.text
    [request] = voice.speech.requests
    assert request.file is not None
    assert (request.file.filename, request.file.content_type) == ("audio.wav", "audio/wav")
    assert "x-injected" not in request.headers
    assert request.fields == {"model": "whisper-1", "response_format": "json"}


# --- the provider answering badly ----------------------------------------------------------


async def test_a_provider_answering_html_is_a_server_error_naming_no_key(voice: Voice) -> None:
    voice.speech.script(
        Answer(200, b"<html><body>Welcome to nginx</body></html>", {"content-type": "text/html"})
    )

    response = await transcribe(voice, body(WAV))

    assert response.status_code >= 500, response.text
    assert "transcript" in error(response)["message"]
    assert API_KEY not in response.text


async def test_a_provider_answering_non_utf8_is_a_server_error(voice: Voice) -> None:
    voice.speech.script(Answer(200, b'{"text": "caf\xe9"}', {"content-type": "application/json"}))

    response = await transcribe(voice, body(WAV))

    assert response.status_code >= 500, response.text
    assert "error" in response.json()


async def test_a_provider_refusing_the_key_never_echoes_any_part_of_it(voice: Voice) -> None:
    # the fake answers as OpenAI does: "Incorrect API key provided: sk-spe***cdef."
    voice.speech.api_key = "sk-another-key-entirely"

    response = await transcribe(voice, body(WAV))

    assert response.status_code >= 500, response.text
    assert API_KEY[:6] not in response.text
    assert API_KEY[-4:] not in response.text
    assert "***" not in response.text


async def test_a_transcript_with_a_nul_is_answered_as_valid_json(voice: Voice) -> None:
    voice.speech.script(Answer(200, {"text": "one\u0000two"}))

    response = await transcribe(voice, body(WAV))

    assert response.status_code == 200, response.text
    assert "text" in response.json()


async def test_a_provider_rate_limit_is_a_429_with_its_retry_after(voice: Voice) -> None:
    voice.speech.script(Answer(429, openai_error("Rate limit reached"), {"retry-after": "7"}))

    response = await transcribe(voice, body(WAV))

    assert len(voice.speech.requests) == 1
    assert response.headers.get("retry-after") == "7", (response.status_code, response.headers)
    assert response.status_code == 429, response.text
    assert error(response)["type"] == "rate_limit_error"


# --- the spooled temporary file ------------------------------------------------------------


async def test_the_temporary_file_is_removed_whatever_the_outcome(
    voice: Voice, spool: Path
) -> None:
    big = WAV + b"\x00" * 30_000

    async def chunked(data: bytes) -> AsyncIterator[bytes]:
        for at in range(0, len(data), 4096):
            yield data[at : at + 4096]

    outcomes = [
        await transcribe(voice, body(WAV)),  # done
        await transcribe(voice, chunked(body(big))),  # 413 while it arrives
        await transcribe(voice, body(WAV)[:-40]),  # never closed: 400
        await transcribe(voice, body(b"notes, not audio\n")),  # 415
        await transcribe(voice, body(WAV, fields={"model": "whisper-1", "prompt": "x"})),  # 400
    ]
    voice.speech.script(Answer(400, openai_error("Audio file might be corrupted")))
    outcomes.append(await transcribe(voice, body(WAV)))  # the provider refuses

    assert [r.status_code for r in outcomes] == [200, 413, 400, 415, 400, 400], [
        r.text for r in outcomes
    ]
    assert list(spool.iterdir()) == []


async def test_a_declared_length_over_the_limit_is_a_413_before_the_body_is_read(
    voice: Voice, spool: Path
) -> None:
    url = httpx.URL(str(voice.client.base_url))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = (
        f"POST {ROUTE} HTTP/1.1\r\nHost: {url.host}\r\nContent-Length: 10000000\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers(voice).items())
        + "\r\n"
    )
    writer.write(head.encode() + body(WAV)[:1000])  # the rest never comes
    await writer.drain()
    try:
        status_line = await asyncio.wait_for(reader.readline(), WAIT_S)
    finally:
        writer.close()

    assert status_line.split()[1] == b"413", status_line
    assert list(spool.iterdir()) == []


# --- more of OpenAI's request --------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["prompt", "stream", "timestamp_granularities[]", "chunking_strategy", "include[]"],
)
async def test_a_field_the_sdk_may_send_but_whalli_cannot_honour_is_a_400_naming_it(
    voice: Voice, spool: Path, field: str
) -> None:
    fields = {"model": "whisper-1", field: "word" if field.endswith("[]") else "x"}

    response = await transcribe(voice, body(WAV, fields=fields))

    assert response.status_code == 400, response.text
    assert error(response)["param"] == field
    assert voice.speech.requests == []
    assert list(spool.iterdir()) == []


async def test_a_provider_refusal_quoting_the_key_is_passed_on_without_it(voice: Voice) -> None:
    said = f"Invalid file: the request signed with {API_KEY} holds no audio stream"
    voice.speech.script(Answer(400, openai_error(said)))

    response = await transcribe(voice, body(WAV))

    assert response.status_code == 400, response.text
    assert "no audio stream" in error(response)["message"]
    assert API_KEY not in response.text


async def test_a_client_leaving_mid_upload_leaves_no_temporary_file(
    voice: Voice, spool: Path
) -> None:
    url = httpx.URL(str(voice.client.base_url))
    full = body(WAV + b"\x00" * 8000)
    _reader, writer = await asyncio.open_connection(url.host, url.port)
    head = (
        f"POST {ROUTE} HTTP/1.1\r\nHost: {url.host}\r\nContent-Length: {len(full)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers(voice).items())
        + "\r\n"
    )
    writer.write(head.encode() + full[:3000])
    await writer.drain()

    async def spooled() -> bool:
        return any(spool.iterdir())

    assert await _within(spooled), "the upload never reached the route"
    writer.close()  # gone, the rest never sent

    async def emptied() -> bool:
        return not any(spool.iterdir())

    assert await _within(emptied), list(spool.iterdir())
    assert voice.speech.requests == []
    # the app still answers
    assert (await transcribe(voice, body(WAV))).status_code == 200


async def _within(check: Any) -> bool:
    """Poll ``check`` until true, up to WAIT_S (a bound on a wait, not a speed assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


# --- a voice memo in a chat ----------------------------------------------------------------


async def test_a_transcribed_voice_memo_reaches_the_model_as_its_text(
    voice: Voice, provider: FakeProviderServer
) -> None:
    voice.speech.texts[WAV] = "Remind me to call the plumber on Friday."
    uploaded = await voice.client.post(
        "/api/files/upload", content=form(WAV, "memo.wav"), headers={**voice.auth, **multipart()}
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    extract = await resolved(voice.container.services.extract_attachment())
    await extract.execute(ExtractAttachment(attachment_id=uuid.UUID(file_id)))

    started = {"model": MODEL, "message": "What did I say?", "attachmentIds": [file_id]}
    stream_headers = {**voice.auth, "Accept": "text/event-stream"}
    async with voice.client.stream(
        "POST", "/api/chat/start", json=started, headers=stream_headers
    ) as response:
        assert response.status_code == 201, await response.aread()
        await response.aread()

    sent = provider.requests[-1].body["messages"][-1]["content"]
    assert "Remind me to call the plumber on Friday." in sent
    assert sent.endswith("What did I say?")
    [request] = voice.speech.requests
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


async def test_the_text_format_answers_one_well_formed_content_type(voice: Voice) -> None:
    response = await transcribe(
        voice, body(WAV, fields={"model": "whisper-1", "response_format": "text"})
    )

    assert response.status_code == 200, response.text
    assert response.text == TRANSCRIPT
    assert response.headers["content-type"].lower().count("charset") == 1, response.headers


async def test_the_users_rate_limit_refuses_a_transcription_before_its_audio_is_read(
    stack_urls: StackUrls,
    migrated_database_url: str,
    unique: str,
    speech: FakeTranscriptionServer,  # noqa: F811
    spool: Path,
) -> None:
    overrides = {
        "WHALLI_TRANSCRIPTION_BASE_URL": speech.base_url,
        "WHALLI_TRANSCRIPTION_API_KEY": API_KEY,
        "WHALLI_EXTRACTION_TEMP_DIR": str(spool),
        "WHALLI_RATE_LIMIT_USER_PER_MIN": "4",
    }
    async with _voice(stack_urls, unique, speech, **overrides) as limited:
        answers = [await transcribe(limited, body(WAV)) for _ in range(6)]

    statuses = [r.status_code for r in answers]
    assert 429 in statuses, statuses
    refused = answers[statuses.index(429)]
    assert error(refused)["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) > 0
    assert statuses.count(200) == len(speech.requests)
    assert list(spool.iterdir()) == []


async def test_parallel_transcriptions_good_and_broken_all_answer_and_leave_no_file(
    voice: Voice, spool: Path
) -> None:
    good = [transcribe(voice, body(WAV)) for _ in range(4)]
    cut = [transcribe(voice, body(WAV)[:-30]) for _ in range(2)]
    too_big = [transcribe(voice, body(WAV + b"\x00" * 30_000)) for _ in range(2)]

    answers = await asyncio.gather(*good, *cut, *too_big)

    assert [r.status_code for r in answers] == [200] * 4 + [400] * 2 + [413] * 2
    assert len(voice.speech.requests) == 4
    assert list(spool.iterdir()) == []
