"""Speech to text over OpenAI's ``POST {base_url}/audio/transcriptions`` (multipart/form-data:
``file``, ``model``, ``language``, ``response_format=json`` → ``{"text", "usage"}``), with
httpx: OpenAI's Whisper, or a self-hosted server speaking the same protocol
(faster-whisper-server, LocalAI).

What a transcription used is OpenAI's ``usage``: ``{"type": "duration", "seconds"}`` for a model
billed by duration (whisper-1), ``{"type": "tokens", "input_tokens", "input_token_details":
{"text_tokens", "audio_tokens"}, "output_tokens", "total_tokens"}`` for one billed by tokens
(gpt-4o-transcribe, gpt-4o-mini-transcribe). A server that says no seconds (no usage, a
self-hosted one; or tokens only, or seconds past belief) has a WAV file's duration read from
its header; any other audio then counts 0 seconds (measuring it would mean decoding it). A usage
that does not read as either shape counts as none: the transcript is what matters."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import httpx
import msgspec

from whalli.adapters.ai._halves import valid_text
from whalli.adapters.ai._http import MAX_ERROR_BODY, retry_after, status_error
from whalli.adapters.ai._streaming import provider_error
from whalli.adapters.ai._upstream_errors import request_secrets
from whalli.domain.model.chats import reported_count
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.transcription_models import (
    Transcript,
    TranscriptionUsage,
    reported_seconds,
)
from whalli.ports.transcriber import Transcriber

PROVIDER = "transcription"
# A transcript of the largest file OpenAI takes (25 MB, hours of speech) is far below this: a
# larger answer is no transcript (a wrong base URL), and it is not held whole in memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# OpenAI tells the format by the file name's extension (it takes flac, m4a, mp3, mp4, mpeg,
# mpga, oga, ogg, wav and webm): the name sent is made from the type detected from the
# content, never the client's file name. Matroska goes as WebM, the Matroska profile OpenAI
# takes (its decoder reads either by content); "mka" it refuses.
_EXTENSIONS = {
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "audio/mp4": "m4a",
    "audio/flac": "flac",
    "audio/x-matroska": "webm",
}


class _Answer(msgspec.Struct):
    text: str
    usage: Any = None  # read apart (``_usage``): a strange one does not lose the transcript


class _TokenDetails(msgspec.Struct):
    text_tokens: int = 0
    audio_tokens: int = 0


class _Usage(msgspec.Struct):
    type: str
    seconds: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: Any = 0  # read only when it is all that is said: a strange one loses nothing
    input_token_details: _TokenDetails | None = None


def clean(text: str) -> str:
    """A transcript as text that can be stored and encoded: without NUL (which Postgres text
    and jsonb refuse) and with each lone surrogate as U+FFFD (not valid UTF-8)."""
    return valid_text(text.replace("\x00", ""))


class OpenAITranscriber(Transcriber):
    """The transcript is ``clean``: whatever the server sent, it can be stored.

    Raises ``ProviderRateLimited`` (retryable, with the server's ``retry_after`` seconds when
    it said) for a 429, as the chat models do; ``ServiceUnavailable`` (with its
    ``retry_after``) when trying again later may help otherwise (a 5xx answer, the server
    unreachable or too slow); else ``ProviderError``: a request refused as invalid
    (400, 413, 422: bad or unsupported audio) is a ``ProviderRejectedRequest`` with the
    server's own explanation, sanitised; a 401, 403 or 404 (the key or the model) says only
    its status; an answer without a transcript names the base URL. ``api_key`` empty: no
    Authorization header (a local server needs none). The key is never in a message."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str = "",
        model: str = "whisper-1",
        timeout_s: float = 300.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/audio/transcriptions"
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._model = model
        self._timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)

    async def transcribe(
        self, audio: Path, content_type: str, language: str | None = None
    ) -> Transcript:
        answer = await self._transcribe(audio, content_type, language)
        usage = _usage(answer.usage)
        if usage.seconds == 0 and content_type == "audio/wav":
            seconds = await asyncio.to_thread(wav_seconds, audio)
            usage = msgspec.structs.replace(usage, seconds=reported_seconds(seconds))
        return Transcript(text=clean(answer.text), usage=usage)

    async def _transcribe(self, audio: Path, content_type: str, language: str | None) -> _Answer:
        form = {"model": self._model, "response_format": "json"}
        if language:
            form["language"] = language
        name = f"audio.{_EXTENSIONS.get(content_type, 'bin')}"
        try:
            with audio.open("rb") as file:  # read in chunks as it is sent
                files = {"file": (name, file, content_type)}
                async with self._http.stream(
                    "POST", self._url, data=form, files=files, headers=self._headers,
                    timeout=self._timeout,
                ) as response:  # fmt: skip
                    return await self._read(response)
        except httpx.TimeoutException as e:
            raise _unavailable("did not answer in time") from e
        except httpx.LocalProtocolError as e:  # not sent: asking again would not help
            raise provider_error(
                "The request to the transcription provider could not be sent (an illegal "
                "header value: check its API key).",
                provider=PROVIDER, kind="protocol", retryable=False,
            ) from e  # fmt: skip
        except httpx.HTTPError as e:
            raise _unavailable(f"could not be reached ({type(e).__name__})") from e

    async def _read(self, response: httpx.Response) -> _Answer:
        limit = MAX_ANSWER_BYTES if response.is_success else MAX_ERROR_BODY
        body = await _prefix(response, limit)
        status = response.status_code
        if status >= 500:
            raise _unavailable(f"answered HTTP {status}", retry_after(response.headers))
        # a 429 is a ProviderRateLimited; redirects are not followed: a 3xx is a bad base URL
        if not response.is_success:
            raise status_error(
                PROVIDER, status, response.headers, body,
                secrets=request_secrets(self._headers),
            )  # fmt: skip
        try:
            return _decode(body)
        except (msgspec.DecodeError, ValueError, RecursionError):
            raise provider_error(
                "The transcription provider answered without a transcript: check its base URL.",
                provider=PROVIDER, kind="protocol", retryable=False,
            ) from None  # fmt: skip


def _decode(body: bytes) -> _Answer:
    """The answer; a lone surrogate escape (``"\\ud83d"``), legal JSON that msgspec refuses,
    is read by the standard library's decoder (then ``clean``)."""
    try:
        return msgspec.json.decode(body, type=_Answer)
    except msgspec.DecodeError:
        return msgspec.convert(json.loads(body.decode()), type=_Answer)


def _usage(raw: Any) -> TranscriptionUsage:
    """OpenAI's ``usage`` as a ``TranscriptionUsage`` (none, or another shape: all 0). Each
    count is believed as a chat reply's is (``reported_count``, ``reported_seconds``: one past
    belief is none). Input tokens the details do not say are text are taken as the audio's
    (the most of them, and the dearer): all of them without details, the rest with partial
    ones, so that the prompt tokens recorded are the provider's ``input_tokens``. A usage that
    says only ``total_tokens`` (no input nor output tokens) has them all counted as input audio
    tokens, the dearer input kind: charged too much rather than not at all."""
    try:
        usage = msgspec.convert(raw, _Usage)
    except msgspec.ValidationError:
        return TranscriptionUsage()
    if usage.type == "duration":
        seconds = usage.seconds if usage.seconds is not None else 0.0
        return TranscriptionUsage(seconds=reported_seconds(seconds))
    if usage.type != "tokens":
        return TranscriptionUsage()
    details = usage.input_token_details or _TokenDetails()
    text = reported_count(details.text_tokens)
    said = usage.input_tokens
    if said == 0 and usage.output_tokens == 0:
        said = usage.total_tokens  # a total alone: all of it input
    audio = max(reported_count(said) - text, reported_count(details.audio_tokens))
    return TranscriptionUsage(
        input_text_tokens=text, input_audio_tokens=audio,
        output_tokens=reported_count(usage.output_tokens),
    )  # fmt: skip


_MAX_CHUNKS = 64  # a WAV file's chunks before its data: fmt, and a few of metadata


def wav_seconds(path: Path) -> float:
    """The duration of a RIFF/WAVE file from its header (its ``data`` size over the ``fmt``
    chunk's bytes per second; a size left unset, as a stream writes it, is the rest of the
    file); 0 when the header does not tell."""
    try:
        with path.open("rb") as file:
            size = path.stat().st_size
            if file.read(12)[8:] != b"WAVE":
                return 0.0
            byte_rate = 0
            for _ in range(_MAX_CHUNKS):
                header = file.read(8)
                if len(header) < 8:
                    return 0.0
                kind, length = header[:4], struct.unpack("<I", header[4:])[0]
                if kind == b"fmt ":
                    fmt = file.read(length + length % 2)
                    if len(fmt) < 12:
                        return 0.0
                    byte_rate = struct.unpack("<I", fmt[8:12])[0]
                elif kind == b"data":
                    rest = size - file.tell()
                    data = rest if length in (0, 0xFFFFFFFF) or length > rest else length
                    return data / byte_rate if byte_rate > 0 else 0.0
                else:
                    file.seek(length + length % 2, 1)
    except OSError:
        return 0.0
    return 0.0


async def _prefix(response: httpx.Response, limit: int) -> bytes:
    read, size = [], 0
    async for chunk in response.aiter_bytes():
        read.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(read)[:limit]


def _unavailable(what: str, retry_after_s: float | None = None) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The transcription provider {what}; try again shortly.",
        provider=PROVIDER,
        retry_after=retry_after_s,
    )
