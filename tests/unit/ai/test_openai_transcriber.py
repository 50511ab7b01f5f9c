"""``OpenAITranscriber`` against a loopback server speaking OpenAI's /audio/transcriptions:
the multipart request it sends, and what each kind of failure becomes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_transcription import (
    API_KEY,
    TOKENS_USAGE,
    TRANSCRIPT,
    Answer,
    FakeTranscriptionServer,
    openai_error,
    tiny_wav,
)
from whalli.adapters.ai.openai_transcriber import OpenAITranscriber, wav_seconds
from whalli.adapters.outbound_http import new_http_client
from whalli.domain.model.chats import MAX_REPORTED_TOKENS
from whalli.domain.model.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderRejectedRequest,
    ServiceUnavailable,
)
from whalli.domain.model.transcription_models import MAX_REPORTED_SECONDS, TranscriptionUsage

WAV = tiny_wav()


@pytest.fixture
def server() -> Iterator[FakeTranscriptionServer]:
    found = FakeTranscriptionServer().start()
    yield found
    found.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = new_http_client(timeout=None, max_connections=10, max_keepalive_connections=10)
    yield client
    await client.aclose()


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "whalli-extract-abc123"  # a temporary file's name, without extension
    path.write_bytes(WAV)
    return path


def transcriber(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, **options: object
) -> OpenAITranscriber:
    settings: dict[str, object] = {"base_url": server.base_url, "api_key": API_KEY, **options}
    return OpenAITranscriber(http, **settings)  # type: ignore[arg-type]


async def test_the_audio_goes_as_openai_multipart_and_the_transcript_comes_back(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    server.texts[WAV] = "Ship the release on Friday."

    transcript = await transcriber(http, server, model="whisper-large-v3").transcribe(
        wav, "audio/wav", "de"
    )

    assert transcript.text == "Ship the release on Friday."
    [request] = server.requests
    assert request.path == "/v1/audio/transcriptions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.fields == {
        "model": "whisper-large-v3",
        "response_format": "json",
        "language": "de",
    }
    assert request.file is not None
    # named after the detected type (OpenAI reads the format from the extension)
    assert (request.file.filename, request.file.content_type) == ("audio.wav", "audio/wav")
    assert request.file.data == WAV


async def test_no_language_sends_none_and_no_key_sends_no_authorization(
    http: httpx.AsyncClient, wav: Path
) -> None:
    keyless = FakeTranscriptionServer(api_key="").start()
    try:
        transcript = await OpenAITranscriber(http, base_url=keyless.base_url + "/").transcribe(
            wav, "audio/mpeg"
        )
    finally:
        keyless.stop()
    assert transcript.text == TRANSCRIPT
    [request] = keyless.requests
    assert "authorization" not in request.headers
    assert "language" not in request.fields
    assert request.file is not None
    assert request.file.filename == "audio.mp3"


async def test_a_400_is_the_callers_error_with_the_providers_reason_without_the_key(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    said = f"Audio file might be corrupted or unsupported (sent with {API_KEY})"
    server.script(Answer(400, openai_error(said, "invalid_value")))

    with pytest.raises(ProviderRejectedRequest, match="corrupted or unsupported") as caught:
        await transcriber(http, server).transcribe(wav, "audio/wav")

    assert API_KEY not in caught.value.message
    assert caught.value.retryable is False
    assert caught.value.details["upstream_status"] == 400


async def test_a_401_says_only_its_status_never_the_echoed_key(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    with pytest.raises(ProviderError, match=r"HTTP 401: invalid_api_key\)") as caught:
        await transcriber(http, server, api_key="sk-wrong-key-987654321").transcribe(
            wav, "audio/wav"
        )

    assert "9876" not in caught.value.message
    assert "4321" not in caught.value.message
    assert not isinstance(caught.value, ProviderRejectedRequest)
    assert caught.value.retryable is False


async def test_a_429_is_a_rate_limit_with_its_retry_after_as_for_chat_models(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    server.script(Answer(429, openai_error("Rate limit reached"), {"retry-after": "7"}))

    with pytest.raises(ProviderRateLimited, match="rate limiting requests") as caught:
        await transcriber(http, server).transcribe(wav, "audio/wav")

    assert caught.value.retryable is True
    assert caught.value.details["retry_after"] == 7.0


@pytest.mark.parametrize("status", [500, 503])
async def test_a_5xx_is_service_unavailable_so_the_queue_retries(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path, status: int
) -> None:
    server.script(Answer(status, openai_error("try later"), {"retry-after": "7"}))

    with pytest.raises(ServiceUnavailable, match=f"answered HTTP {status}") as caught:
        await transcriber(http, server).transcribe(wav, "audio/wav")

    assert caught.value.details["retry_after"] == 7.0


async def test_an_unreachable_server_is_service_unavailable(
    http: httpx.AsyncClient, wav: Path
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]  # bound, never listening: connections are refused
        adapter = OpenAITranscriber(http, base_url=f"http://127.0.0.1:{port}/v1")
        with pytest.raises(ServiceUnavailable, match="could not be reached"):
            await adapter.transcribe(wav, "audio/wav")


async def test_a_2xx_answer_without_a_transcript_names_the_base_url(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    server.script(Answer(200, b"<html>Welcome</html>", {"content-type": "text/html"}))

    with pytest.raises(ProviderError, match="without a transcript: check its base URL"):
        await transcriber(http, server).transcribe(wav, "audio/wav")


async def test_an_unsupported_format_refused_by_the_provider_is_the_callers_error(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    with pytest.raises(ProviderRejectedRequest, match="Invalid file format"):
        await transcriber(http, server).transcribe(wav, "audio/x-aiff")  # sent as audio.bin


async def test_matroska_audio_is_sent_as_webm_an_extension_openai_takes(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    transcript = await transcriber(http, server).transcribe(wav, "audio/x-matroska")
    assert transcript.text == TRANSCRIPT

    [request] = server.requests
    assert request.file is not None
    assert request.file.filename == "audio.webm"


@pytest.mark.parametrize(
    ("said", "stored"),
    [
        (b'{"text": "Call Ada\\u0000 at nine."}', "Call Ada at nine."),
        (b'{"text": "half \\ud83d of an emoji"}', "half \ufffd of an emoji"),
        (b'{"text": "a whole \\ud83d\\ude00"}', "a whole \U0001f600"),
    ],
    ids=["nul", "lone-surrogate", "pair"],
)
async def test_a_transcript_is_cleaned_of_what_text_cannot_hold(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path, said: bytes, stored: str
) -> None:
    server.script(Answer(200, said, {"content-type": "application/json"}))

    assert (await transcriber(http, server).transcribe(wav, "audio/wav")).text == stored


async def test_whisper_says_the_seconds_of_audio_it_transcribed(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    server.seconds = 42.5

    transcript = await transcriber(http, server, model="whisper-1").transcribe(wav, "audio/wav")

    assert transcript.usage == TranscriptionUsage(seconds=42.5)


async def test_a_gpt_4o_transcribe_model_says_its_text_audio_and_output_tokens(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    model = transcriber(http, server, model="gpt-4o-mini-transcribe")

    transcript = await model.transcribe(wav, "audio/mpeg")

    assert transcript.usage == TranscriptionUsage(
        input_text_tokens=200, input_audio_tokens=1_000, output_tokens=300
    )
    assert TOKENS_USAGE["input_tokens"] == 1_200  # the fake answers OpenAI's numbers


async def test_tokens_said_of_a_wav_file_come_with_its_duration_from_its_header(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    transcript = await transcriber(http, server, model="gpt-4o-transcribe").transcribe(
        wav, "audio/wav"
    )

    assert transcript.usage.seconds == pytest.approx(0.1)  # 800 frames at 8 kHz
    assert transcript.usage.input_audio_tokens == 1_000


async def test_a_server_that_says_no_usage_has_a_wav_measured_and_other_audio_counted_0(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path, tmp_path: Path
) -> None:
    local = transcriber(http, server, model="Systran/faster-whisper-small")
    long_wav = tmp_path / "long"
    long_wav.write_bytes(tiny_wav(frames=24_000))  # three seconds at 8 kHz

    assert (await local.transcribe(long_wav, "audio/wav")).usage == TranscriptionUsage(seconds=3)
    assert (await local.transcribe(wav, "audio/ogg")).usage == TranscriptionUsage()


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"type": "duration", "seconds": 7}, TranscriptionUsage(seconds=7)),
        (
            {"type": "tokens", "input_tokens": 50, "output_tokens": 9, "total_tokens": 59},
            TranscriptionUsage(input_audio_tokens=50, output_tokens=9),
        ),
        ({"type": "duration", "seconds": -3}, TranscriptionUsage()),
        ({"type": "minutes", "minutes": 2}, TranscriptionUsage()),
        ({"type": "tokens", "input_tokens": "many"}, TranscriptionUsage()),
        ("lots", TranscriptionUsage()),
        (None, TranscriptionUsage()),
        (
            {"type": "tokens", "input_tokens": 1_200, "input_token_details": {"text_tokens": 200},
             "output_tokens": 300},
            TranscriptionUsage(input_text_tokens=200, input_audio_tokens=1_000, output_tokens=300),
        ),
        (
            {"type": "tokens", "input_tokens": 2**64 - 1, "output_tokens": 10},
            TranscriptionUsage(output_tokens=10),
        ),
        (
            {"type": "tokens", "input_tokens": 2**63, "output_tokens": 2**100,
             "input_token_details": {"text_tokens": 2**62, "audio_tokens": 2**62}},
            TranscriptionUsage(),
        ),
        (
            {"type": "tokens", "input_tokens": MAX_REPORTED_TOKENS + 1, "output_tokens": 12,
             "input_token_details": {"text_tokens": 7, "audio_tokens": MAX_REPORTED_TOKENS + 1}},
            TranscriptionUsage(input_text_tokens=7, output_tokens=12),
        ),
        ({"type": "duration", "seconds": 1e308}, TranscriptionUsage()),
        (
            {"type": "duration", "seconds": MAX_REPORTED_SECONDS},
            TranscriptionUsage(seconds=MAX_REPORTED_SECONDS),
        ),
        ({"type": "tokens", "total_tokens": 640}, TranscriptionUsage(input_audio_tokens=640)),
        (
            {"type": "tokens", "input_tokens": 0, "output_tokens": 0, "total_tokens": 640},
            TranscriptionUsage(input_audio_tokens=640),
        ),
        (
            {"type": "tokens", "total_tokens": 640, "input_token_details": {"text_tokens": 40}},
            TranscriptionUsage(input_text_tokens=40, input_audio_tokens=600),
        ),
        (
            {"type": "tokens", "total_tokens": MAX_REPORTED_TOKENS + 1},
            TranscriptionUsage(),
        ),
        (
            {"type": "tokens", "input_tokens": 50, "output_tokens": 9, "total_tokens": 10**6},
            TranscriptionUsage(input_audio_tokens=50, output_tokens=9),
        ),
        (
            {"type": "tokens", "input_tokens": 50, "output_tokens": 9, "total_tokens": "59"},
            TranscriptionUsage(input_audio_tokens=50, output_tokens=9),
        ),
    ],
    ids=["duration", "tokens-without-details", "negative", "unknown-type", "mistyped", "string",
         "null", "partial-details", "beyond-bigint", "sum-beyond-bigint", "past-belief",
         "seconds-past-belief", "a-whole-day", "total-only", "total-with-zeros",
         "total-with-text-details", "total-past-belief", "total-beside-counts",
         "mistyped-total"],
)  # fmt: skip
async def test_a_usage_is_read_as_openai_documents_it_and_a_strange_one_as_none(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path, usage: object,
    expected: TranscriptionUsage,
) -> None:  # fmt: skip
    server.script(Answer(200, {"text": "Hello.", "usage": usage}))

    transcript = await transcriber(http, server).transcribe(wav, "audio/mpeg")

    assert (transcript.text, transcript.usage) == ("Hello.", expected)


async def test_seconds_past_belief_count_as_none_and_a_wav_is_measured_instead(
    http: httpx.AsyncClient, server: FakeTranscriptionServer, wav: Path
) -> None:
    server.script(Answer(200, {"text": "Hello.", "usage": {"type": "duration", "seconds": 1e308}}))

    transcript = await transcriber(http, server).transcribe(wav, "audio/wav")

    assert transcript.usage.seconds == pytest.approx(0.1)  # its header's


def test_the_duration_of_a_wav_file_is_read_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(tiny_wav(frames=4_000, rate=16_000))
    assert wav_seconds(path) == pytest.approx(0.25)
    streamed = bytearray(tiny_wav(frames=8_000))  # a stream's header: sizes left unset
    data = streamed.index(b"data")
    streamed[data + 4 : data + 8] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(streamed))
    assert wav_seconds(path) == pytest.approx(1.0)
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")  # cut short
    assert wav_seconds(path) == 0
    path.write_bytes(b"OggS" + bytes(40))
    assert wav_seconds(path) == 0
