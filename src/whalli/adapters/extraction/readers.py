"""The parsers run inside the sandbox child: PDF (text layer, OCR for scanned pages), images
(Tesseract) and text files (charset detection). They add pages to a ``PageSink`` and raise
``ExtractionFailed`` with a reason a user can read."""

from __future__ import annotations

import codecs
import math
import warnings
from pathlib import Path
from typing import Any, Protocol

from whalli.domain.model.attachments import OCR_FAILED, OCR_IMAGE_TOO_LARGE, OCR_NOT_INSTALLED
from whalli.domain.model.errors import ExtractionFailed

POINTS_PER_INCH = 72
# failures that already say what went wrong, for the sandbox to report as they are
_OURS = (ExtractionFailed, MemoryError, RecursionError)
# a page with less text than this in its text layer, and an image on it, is treated as a scan
_SCAN_TEXT_CHARS = 16


class PageSink(Protocol):
    def add(self, text: str, method: str, *, cut: bool = False) -> bool:
        """Keep one page's text (``cut``: the text goes on beyond what was read); False once
        the text cap is reached (stop reading)."""
        ...


def read_pdf(
    path: Path, sink: PageSink, *, languages: str, resolution: int, max_pixels: int
) -> int:
    """Add each page of the PDF; returns the page count."""
    import pdfplumber
    from pdfminer.pdfdocument import PDFEncryptionError
    from pdfplumber.utils.exceptions import PdfminerException

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pdfminer warns about recoverable damage
            with pdfplumber.open(path) as pdf:
                pages = pdf.pages
                for page in pages:
                    text = page.extract_text() or ""
                    if len(text.strip()) < _SCAN_TEXT_CHARS and (not text.strip() or page.images):
                        image = page.to_image(
                            resolution=_resolution(page, resolution, max_pixels)
                        ).original
                        text, method = ocr(image, languages), "ocr"
                    else:
                        method = "text"
                    if not sink.add(text, method):
                        break
                return len(pages)
    except _OURS:
        raise
    except Exception as e:
        # pdfminer, pdfplumber and pdfium fail on broken files with all kinds of exceptions
        cause = e.args[0] if isinstance(e, PdfminerException) and e.args else e
        if isinstance(cause, MemoryError | RecursionError):
            raise cause from None  # pdfplumber wraps them; the sandbox names them
        if isinstance(cause, PDFEncryptionError):
            raise ExtractionFailed("the PDF is encrypted") from e
        raise ExtractionFailed("the PDF is damaged or incomplete") from e


def _resolution(page: Any, wanted: int, max_pixels: int) -> float:
    """``wanted`` dpi, lowered so that the rendered page stays under ``max_pixels`` (a page of
    200 x 200 inches would otherwise need gigabytes)."""
    area = float(page.width) * float(page.height) / POINTS_PER_INCH**2  # square inches
    if area <= 0:
        return float(wanted)
    return min(float(wanted), math.sqrt(max_pixels / area))


def read_image(path: Path, sink: PageSink, *, languages: str) -> int:
    """OCR the image; each frame of a multi-page TIFF is a page. Returns the page count."""
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as image:
            pages = int(getattr(image, "n_frames", 1)) if image.format == "TIFF" else 1
            frames = ImageSequence.Iterator(image) if pages > 1 else iter([image])
            for frame in frames:  # one at a time: a long fax stays small in memory
                if not sink.add(ocr(frame, languages), "ocr"):
                    break
            return pages
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ExtractionFailed(f"{OCR_IMAGE_TOO_LARGE} ({e})") from e
    except _OURS:
        raise
    except Exception as e:
        # Pillow fails on broken files with OSError, SyntaxError, EOFError, struct.error...
        raise ExtractionFailed("the image is damaged or incomplete") from e


def ocr(image: Any, languages: str) -> str:
    import pytesseract
    from PIL import Image

    image.load()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # text drawn on a transparent background would turn black on black
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, "white")
        image = Image.alpha_composite(background, rgba)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    try:
        return str(pytesseract.image_to_string(image, lang=languages))
    except pytesseract.TesseractNotFoundError as e:
        raise ExtractionFailed(OCR_NOT_INSTALLED) from e
    except pytesseract.TesseractError as e:
        raise ExtractionFailed(f"{OCR_FAILED} ({str(e)[:200]})") from e


def read_text(path: Path, sink: PageSink, *, max_chars: int) -> int:
    # no character takes more than 4 bytes: reading more could not add to the kept text
    limit = 4 * max_chars + 4
    with path.open("rb") as file:
        data = file.read(limit + 1)
    complete = len(data) <= limit
    sink.add(decode(data[:limit], complete=complete), "text", cut=not complete)
    return 1


def decode(data: bytes, *, complete: bool = True) -> str:
    """UTF-8 or UTF-16 with a byte order mark; else UTF-8; else what charset-normalizer finds;
    else Latin-1 (which decodes anything). A character cut at the end of an incomplete ``data``
    is dropped."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return codecs.getincrementaldecoder("utf-16")("replace").decode(data, final=complete)
    try:
        return codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=complete)
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - it comes with pdfminer.six
        return data.decode("latin-1")
    best = from_bytes(data).best()
    return str(best) if best is not None else data.decode("latin-1")
