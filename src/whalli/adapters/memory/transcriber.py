"""A transcriber that answers from a table instead of a speech model."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from whalli.domain.model.errors import ProviderError
from whalli.domain.model.transcription_models import Transcript, TranscriptionUsage
from whalli.ports.transcriber import Transcriber


class InMemoryTranscriber(Transcriber):
    """Returns the text configured for the file's name, else for its exact content.

    Audio it has no text for raises ``ProviderError`` (as a provider rejecting it would). Every call
    is recorded in ``calls`` as ``(file name, content type, language)``; each transcript says it
    used ``usage``.
    """

    def __init__(
        self,
        by_name: Mapping[str, str] | None = None,
        by_content: Mapping[bytes, str] | None = None,
        usage: TranscriptionUsage | None = None,
    ) -> None:
        self.by_name = dict(by_name or {})
        self.by_content = dict(by_content or {})
        self.usage = usage or TranscriptionUsage()
        self.calls: list[tuple[str, str, str | None]] = []

    async def transcribe(
        self, audio: Path, content_type: str, language: str | None = None
    ) -> Transcript:
        self.calls.append((audio.name, content_type, language))
        if audio.name in self.by_name:
            return Transcript(text=self.by_name[audio.name], usage=self.usage)
        content = await asyncio.to_thread(audio.read_bytes)
        if content in self.by_content:
            return Transcript(text=self.by_content[content], usage=self.usage)
        raise ProviderError("The audio could not be transcribed.")
