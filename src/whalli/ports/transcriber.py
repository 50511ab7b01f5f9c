"""Speech to text."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from whalli.domain.model.transcription_models import Transcript


class Transcriber(Protocol):
    async def transcribe(
        self, audio: Path, content_type: str, language: str | None = None
    ) -> Transcript:
        """The spoken text and what transcribing it used (``TranscriptionUsage``: the audio's
        seconds, and tokens where the provider bills by tokens; what the provider did not say
        is measured where that is cheap, else 0). Raises ``WhalliError`` subclasses on
        failure."""
        ...
