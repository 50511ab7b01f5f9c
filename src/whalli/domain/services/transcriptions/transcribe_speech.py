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
    WhalliError,
)
from whalli.domain.model.file_types import HEAD_SIZE, FileKind, detect
from whalli.domain.model.transcription_models import Transcript, TranscriptionModel
from whalli.domain.services.chat import usage_writes
from whalli.domain.services.chat.usage_writes import unstoppable, write_usage_retrying
from whalli.domain.services.transcriptions.usage import outcome_of, report, usage_record
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.transcriber import Transcriber
from whalli.ports.transcription_metrics import TranscriptionMetrics
from whalli.ports.unit_of_work import UnitOfWork

# OpenAI's own name for its speech model, taken as a name of whichever model is configured
ALIAS = "whisper-1"
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")  # ISO 639-1 (639-3 codes are three letters)


class TranscribeSpeech(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    audio: Path  # the upload, already spooled to a temporary file by the entrypoint
    model: str
    language: str | None = None


class TranscribeSpeechHandler:
    """The spoken text of an audio file, synchronously; the audio is not stored.

    Rules:
    - no transcriber configured: ``TranscriptionNotConfigured``;
    - ``model`` is the configured model's name, or ``whisper-1`` for it; any other is
      ``ModelNotFound``; ``language``, when given, is an ISO 639 code (else ``InvalidInput``);
    - the caller's plan, read fresh, must include the configured model (``ModelNotInPlan``,
      403, as a chat model above the plan on /v1; a disabled account: ``AccountDisabled``);
    - a file over ``max_bytes`` (the provider's limit) is ``AttachmentTooLarge``;
    - the type comes from the content (``file_types.detect``), never the name: anything but
      audio (a type ``detect`` refuses itself, an empty file, included) is
      ``UnsupportedFileType`` naming the ``file`` field;
    - the provider's errors propagate: a refused audio file is the caller's error
      (``ProviderRejectedRequest``), an unavailable provider ``ServiceUnavailable``;
    - what a transcript used is the caller's usage record (``usage_record``), written before
      the answer and finished even when the client leaves meanwhile; every transcription is
      counted in ``metrics`` (``outcome_of``): ``refused`` by a rule (an unknown model, a bad
      language, the plan, a disabled account, the file's size or type, the provider refusing
      the audio), ``failed`` by the provider, ``done``; none while none is configured.
    """

    def __init__(
        self,
        transcriber: Transcriber | None,
        model: TranscriptionModel,
        max_bytes: int,
        *,
        uow: UnitOfWork,
        clock: Clock,
        ids: IdGenerator,
        metrics: TranscriptionMetrics | None = None,
    ) -> None:
        self._transcriber, self._model, self._max_bytes = transcriber, model, max_bytes
        self._uow, self._clock, self._ids, self._metrics = uow, clock, ids, metrics

    async def execute(self, command: TranscribeSpeech) -> str:
        if self._transcriber is None:
            raise TranscriptionNotConfigured()
        try:
            transcript = await self._transcribe(self._transcriber, command)
        except Exception as e:
            report(self._metrics, self._model, outcome_of(e))
            raise
        report(self._metrics, self._model, "done", transcript.usage)
        record = usage_record(
            self._model, transcript.usage, record_id=self._ids.new_id(),
            user_id=command.user_id, now=self._clock.now(),
        )  # fmt: skip
        write = write_usage_retrying(  # one INSERT: no BEGIN/COMMIT round trips
            self._uow, lambda uow: uow.usage.add(record),
            attempts=usage_writes.ATTEMPTS, backoff_s=usage_writes.BACKOFF_S,
        )  # fmt: skip
        await unstoppable(write)
        return transcript.text

    def refused(self, error: WhalliError) -> None:
        """Count a request the entrypoint refused before it could become a command (its form:
        the file over the limit, a field missing or not taken) as ``execute`` counts its own
        refusals; nothing is counted while no transcriber is configured."""
        if self._transcriber is not None:
            report(self._metrics, self._model, outcome_of(error))

    async def _transcribe(self, transcriber: Transcriber, command: TranscribeSpeech) -> Transcript:
        name = self._model.name
        if command.model not in (name, ALIAS):
            raise ModelNotFound(
                f"The model {command.model!r} does not exist: use {name!r}.", field="model"
            )
        if command.language is not None and not _LANGUAGE.fullmatch(command.language):
            raise InvalidInput(
                "language must be an ISO-639-1 code, such as en or de.", field="language"
            )
        async with self._uow as uow:
            user = await uow.users.get(command.user_id)
        self._model.ensure_allowed(user)
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
        return await transcriber.transcribe(
            command.audio, detected.mime, command.language and command.language.lower()
        )


def _size_and_head(path: Path) -> tuple[int, bytes]:
    with path.open("rb") as file:
        return path.stat().st_size, file.read(HEAD_SIZE)
