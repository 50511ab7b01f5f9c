"""Speech to text."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Transcriber(Protocol):
    async def transcribe(self, audio: Path, content_type: str, language: str | None = None) -> str:
        """The spoken text. Raises ``WhalliError`` subclasses on failure."""
        ...
