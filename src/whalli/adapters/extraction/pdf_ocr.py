"""Text extraction with pdfplumber and Tesseract, in a sandboxed child process."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import msgspec

from whalli.adapters.extraction import readers
from whalli.adapters.extraction.sandbox import DEFAULT_MAX_IMAGE_PIXELS, preload, run_limited
from whalli.domain.model.attachments import ExtractionResult, PageExtraction
from whalli.domain.model.errors import ExtractionFailed, UnsupportedFileType
from whalli.domain.model.file_types import HEAD_SIZE, FileKind, detect
from whalli.ports.text_extractor import TextExtractor

_LANGUAGES = re.compile(r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


class ExtractionOptions(msgspec.Struct, frozen=True, kw_only=True):
    languages: str
    max_chars: int
    resolution: int
    max_pixels: int


class PdfOcrTextExtractor(TextExtractor):
    """PDFs page by page with pdfplumber, OCR (Tesseract) for pages without a text layer and for
    images, text files decoded with charset detection. The type is detected again from the
    content (``content_type`` is not trusted). Parsing runs in a child process limited to
    ``wall_time_s`` and ``memory_bytes``; the text is capped at ``max_chars``."""

    def __init__(
        self,
        *,
        languages: str = "eng",
        max_chars: int = 1_000_000,
        wall_time_s: float = 300.0,
        memory_bytes: int = 1024 * 1024 * 1024,
        ocr_resolution: int = 200,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        if not _LANGUAGES.match(languages):
            raise ValueError(
                f"Tesseract languages must look like 'eng' or 'eng+deu': {languages!r}"
            )
        self.options = ExtractionOptions(
            languages=languages,
            max_chars=max_chars,
            resolution=ocr_resolution,
            max_pixels=max_image_pixels,
        )
        self.wall_time_s = wall_time_s
        self.memory_bytes = memory_bytes
        preload(__name__, "pdfplumber", "pytesseract", "PIL.Image", "charset_normalizer")

    async def extract(self, path: Path, content_type: str) -> ExtractionResult:
        return await asyncio.to_thread(
            run_limited,
            extract_file,
            str(path),
            self.options,
            wall_time_s=self.wall_time_s,
            memory_bytes=self.memory_bytes,
            max_image_pixels=self.options.max_pixels,
            returns=ExtractionResult,
        )


def extract_file(path_name: str, options: ExtractionOptions) -> ExtractionResult:
    """Runs in the sandbox child."""
    path = Path(path_name)
    with path.open("rb") as file:
        head = file.read(HEAD_SIZE)
    try:
        kind = detect(head, path.name).kind
    except UnsupportedFileType as e:
        mime = e.details["mime"]
        if mime == "application/x-empty":
            raise ExtractionFailed("the file is empty") from e
        raise ExtractionFailed(f"cannot extract text from {mime} files") from e
    sink = _Pages(options.max_chars)
    if kind is FileKind.PDF:
        page_count = readers.read_pdf(
            path,
            sink,
            languages=options.languages,
            resolution=options.resolution,
            max_pixels=options.max_pixels,
        )
    elif kind is FileKind.IMAGE:
        page_count = readers.read_image(path, sink, languages=options.languages)
    elif kind is FileKind.TEXT:
        page_count = readers.read_text(path, sink, max_chars=options.max_chars)
    else:
        raise ExtractionFailed("audio files are transcribed, not extracted")
    return sink.result(page_count)


def clean(text: str) -> str:
    """Postgres refuses NUL characters, and lone surrogates are not valid UTF-8."""
    return _SURROGATES.sub("\ufffd", text.replace("\x00", ""))


class _Pages(readers.PageSink):
    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.parts: list[str] = []
        self.pages: list[PageExtraction] = []
        self.length = 0
        self.truncated = False

    def add(self, text: str, method: str, *, cut: bool = False) -> bool:
        self.truncated = self.truncated or cut
        text = clean(text).strip()
        self.pages.append(PageExtraction(page=len(self.pages) + 1, method=method, chars=len(text)))
        separator = "\n\n" if self.parts else ""
        room = self.max_chars - self.length - len(separator)
        if len(text) > room:
            text, self.truncated = text[: max(room, 0)], True
        if text:
            self.parts.append(separator + text)
            self.length += len(separator) + len(text)
        return not self.truncated

    def result(self, page_count: int) -> ExtractionResult:
        methods = {page.method for page in self.pages}
        method = methods.pop() if len(methods) == 1 else ("mixed" if methods else "text")
        return ExtractionResult(
            text="".join(self.parts),
            method=method,
            page_count=page_count,
            pages=tuple(self.pages),
            truncated=self.truncated or len(self.pages) < page_count,
        )
