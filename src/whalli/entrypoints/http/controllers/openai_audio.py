"""The OpenAI-compatible speech to text: ``POST /v1/audio/transcriptions``, so that OpenAI's SDKs
(``client.audio.transcriptions.create``) work against Whalli. Authenticated and rate limited as
every /v1 route; errors in OpenAI's ``{"error": {...}}`` shape."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, Response, post
from litestar.di import NamedDependency

from whalli.config import Settings
from whalli.domain.model.errors import InvalidInput, WhalliError
from whalli.domain.model.principal import Principal
from whalli.domain.services.transcriptions.transcribe_speech import (
    TranscribeSpeech,
    TranscribeSpeechHandler,
)
from whalli.entrypoints.http import openai_errors
from whalli.entrypoints.http.audio_form import spool_form, too_large
from whalli.entrypoints.http.openapi_operations import documented, multipart_form, text_field
from whalli.entrypoints.http.uploads import FRAMING_ALLOWANCE, boundary_of, request_body

FIELDS = ("model", "language", "response_format")
FORMATS = ("json", "text")
# The form the route parses itself, for the document (see openapi_operations.py).
_FORM = multipart_form(
    "OpenAI's transcription form; the parts in any order.",
    "The audio: wav, mp3, ogg, webm or m4a.",
    {
        "model": text_field("The configured transcription model, or `whisper-1` for it."),
        "language": text_field("The spoken language, as an ISO-639-1 code (`en`)."),
        "response_format": text_field(
            '`json` answers `{"text"}`; `text` the bare transcript.',
            enum=FORMATS,
            default="json",
        ),
    },
    required=("model",),
)


class Transcription(msgspec.Struct):
    text: str


class OpenAIAudioController(Controller):
    path = "/v1/audio"
    tags = ["openai-compatible"]
    exception_handlers = openai_errors.openai_exception_handlers()

    @post(
        "/transcriptions",
        status_code=200,
        summary="Transcribe audio (OpenAI-compatible)",
        description="multipart/form-data as OpenAI's: `file` (wav, mp3, ogg, webm, m4a; at most "
        "the transcription limit, 25 MB by default: 413), `model` (the configured "
        "transcription model, or `whisper-1`), optional `language` (ISO-639-1) and "
        '`response_format` (`json`, the default: `{"text"}`; or `text`). Answered at once; '
        "the audio is not stored. 400 when this server has no transcription configured, 403 "
        "when the caller's plan does not include the transcription model. Each transcript is "
        "a usage record of the caller (see `/api/usage`).",
        request_max_body_size=None,  # our own limit, checked while the body arrives
        operation_class=documented(body=_FORM),
    )
    async def transcriptions(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        transcribe_speech: NamedDependency[TranscribeSpeechHandler],
    ) -> Response[Any]:
        boundary = boundary_of(request.headers.get("content-type"))  # no form: not counted
        limit = settings.transcription_max_bytes
        if (request.content_length or 0) > limit + FRAMING_ALLOWANCE:
            refusal = too_large(limit)
            transcribe_speech.refused(refusal)  # counted as the use case counts its own
            raise refusal
        handle, name = tempfile.mkstemp(
            prefix="whalli-speech-", dir=settings.extraction_temp_dir or None
        )
        os.close(handle)
        audio = Path(name)
        try:
            try:
                fields = await spool_form(
                    request_body(request.receive), boundary, limit, audio, FIELDS
                )
                response_format, command = _command(principal, audio, fields)
            except WhalliError as e:
                transcribe_speech.refused(e)
                raise
            text = await transcribe_speech.execute(command)
        finally:
            await asyncio.to_thread(_remove, audio)
        if response_format == "text":
            return Response(text, media_type=MediaType.TEXT)  # Litestar adds the UTF-8 charset
        return Response(msgspec.json.encode(Transcription(text)), media_type="application/json")


def _command(
    principal: Principal, audio: Path, fields: dict[str, str]
) -> tuple[str, TranscribeSpeech]:
    """The answer's format and the command of a form's fields; ``InvalidInput`` naming the
    field that is missing or not taken."""
    response_format = fields.get("response_format") or "json"
    if response_format not in FORMATS:
        raise InvalidInput(
            f"response_format {response_format!r} is not supported: use json or text.",
            field="response_format",
        )
    if not fields.get("model"):
        raise InvalidInput("model is required.", field="model")
    command = TranscribeSpeech(
        user_id=principal.user_id, audio=audio, model=fields["model"],
        language=fields.get("language") or None,
    )  # fmt: skip
    return response_format, command


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
