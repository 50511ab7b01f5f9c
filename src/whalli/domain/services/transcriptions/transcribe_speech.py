"""Use case: transcribe an audio file at once (``TranscribeSpeech``), for ``/v1/audio``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from uuid import UUID

import msgspec

from whalli.domain.model.errors import (
    AttachmentTooLarge,
    InvalidInput,
    ModelNotFound,
    TranscriptionNotConfigured,
    UnsupportedFileType,
)
from whalli.domain.model.file_types import HEAD_SIZE, FileKind, detect
from whalli.ports.transcriber import Transcriber

# OpenAI's own name for its speech model, taken as a name of whichever model is configured
ALIAS = "whisper-1"
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")  # ISO 639-1 (639-3 codes are three letters)


class TranscribeSpeech(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    audio: Path  # the upload, already spooled to a temporary file by the entrypoint
    model: str
    language: str | None = None


class TranscribeSpeechHandler:
    """The spoken text of an audio file, synchronously; nothing is stored.

    Rules:
    - no transcriber configured: ``TranscriptionNotConfigured``;
    - ``model`` is the configured model's name, or ``whisper-1`` for it; any other is
      ``ModelNotFound``; ``language``, when given, is an ISO 639 code (else ``InvalidInput``);
    - a file over ``max_bytes`` (the provider's limit) is ``AttachmentTooLarge``;
    - the type comes from the content (``file_types.detect``), never the name: anything but
      audio (a type ``detect`` refuses itself, an empty file, included) is
      ``UnsupportedFileType`` naming the ``file`` field;
    - the provider's errors propagate: a refused audio file is the caller's error
      (``ProviderRejectedRequest``), an unavailable provider ``ServiceUnavailable``.
    """

    def __init__(self, transcriber: Transcriber | None, model: str, max_bytes: int) -> None:
        self._transcriber, self._model, self._max_bytes = transcriber, model, max_bytes

    async def execute(self, command: TranscribeSpeech) -> str:
        if self._transcriber is None:
            raise TranscriptionNotConfigured()
        if command.model not in (self._model, ALIAS):
            raise ModelNotFound(
                f"The model {command.model!r} does not exist: use {self._model!r}.",
                field="model",
            )
        if command.language is not None and not _LANGUAGE.fullmatch(command.language):
            raise InvalidInput(
                "language must be an ISO-639-1 code, such as en or de.", field="language"
            )
        size, head = await asyncio.to_thread(_size_and_head, command.audio)
        if size > self._max_bytes:
            raise AttachmentTooLarge(
                f"The audio file is larger than the transcription limit of {self._max_bytes} "
                "bytes.",
                limit_bytes=self._max_bytes,
                field="file",
            )
        try:
            detected = detect(head)
        except UnsupportedFileType as e:
            raise UnsupportedFileType(e.message, **{**e.details, "field": "file"}) from e
        if detected.kind is not FileKind.AUDIO:
            raise UnsupportedFileType(
                f"Files of type {detected.mime} cannot be transcribed; send audio.",
                mime=detected.mime,
                field="file",
            )
        return await self._transcriber.transcribe(
            command.audio, detected.mime, command.language and command.language.lower()
        )


def _size_and_head(path: Path) -> tuple[int, bytes]:
    with path.open("rb") as file:
        return path.stat().st_size, file.read(HEAD_SIZE)
