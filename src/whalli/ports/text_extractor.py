"""Text out of an uploaded document or image."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from whalli.domain.model.attachments import ExtractionResult


class TextExtractor(Protocol):
    async def extract(self, path: Path, content_type: str) -> ExtractionResult:
        """Extract the text of the file at ``path``.

        Hostile or broken input raises ``ExtractionFailed`` with a human-readable reason; it never
        takes the calling process down.
        """
        ...
