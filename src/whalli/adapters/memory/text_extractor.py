"""A text extractor that only reads plain text files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from whalli.domain.model.attachments import ExtractionResult
from whalli.domain.model.errors import ExtractionFailed
from whalli.ports.text_extractor import TextExtractor

TEXT_TYPES = frozenset({"application/json", "application/xml", "application/x-yaml"})


def is_text_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in TEXT_TYPES


class InMemoryTextExtractor(TextExtractor):
    """Decodes UTF-8 text files (``text/*`` and a few structured text types), keeping at most
    ``max_chars`` characters; anything else, or bytes that are not UTF-8, raises
    ``ExtractionFailed``.
    """

    def __init__(self, max_chars: int = 1_000_000) -> None:
        self.max_chars = max_chars

    async def extract(self, path: Path, content_type: str) -> ExtractionResult:
        if not is_text_type(content_type):
            raise ExtractionFailed(f"Cannot extract text from {content_type} files.")
        data = await asyncio.to_thread(path.read_bytes)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ExtractionFailed("The file is not valid UTF-8 text.") from e
        truncated = len(text) > self.max_chars
        return ExtractionResult(text=text[: self.max_chars], method="text", truncated=truncated)
