"""The bytes ``bench_files`` uploads: random payloads behind a PNG signature, dense multi-page
text PDFs, and image-only PDFs with text drawn in them (what a scanner makes)."""

from __future__ import annotations

import io
import os
import random
from collections.abc import AsyncIterator, Iterator

from PIL import Image, ImageDraw, ImageFont

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHUNK = 1 << 20
_WORDS = [
    "whale", "ocean", "krill", "plankton", "current", "tide", "reef", "harbour", "lantern",
    "compass", "signal", "anchor", "glacier", "meridian", "voyage", "ledger", "archive",
    "beacon", "cobalt", "delta", "ember", "falcon", "granite",
]  # fmt: skip


class Payload:
    """``size`` bytes: a PNG signature, then a 64 MiB pool of random bytes repeated (object
    stores neither compress nor deduplicate, so repeating the pool costs them the same)."""

    def __init__(self, size: int, pool_size: int = 64 * CHUNK) -> None:
        self.size = size
        self.pool = PNG_SIGNATURE + os.urandom(pool_size - len(PNG_SIGNATURE))

    def chunks(self) -> Iterator[bytes]:
        sent = 0
        while sent < self.size:
            at = sent % len(self.pool)
            n = min(CHUNK, self.size - sent, len(self.pool) - at)
            yield self.pool[at : at + n]
            sent += n

    async def achunks(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk


def multipart(
    payload_chunks: AsyncIterator[bytes], size: int, filename: str, content_type: str
) -> tuple[dict[str, str], AsyncIterator[bytes]]:
    """A streamed ``multipart/form-data`` body with one ``file`` field and its headers (with a
    Content-Length, as a browser sends it)."""
    boundary = "whalli-bench-" + os.urandom(8).hex()
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for chunk in payload_chunks:
            yield chunk
        yield tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    return headers, body()


def text_pdf(pages: int, marker: str, lines: int = 48, seed: int = 0) -> bytes:
    """A PDF of ``pages`` Letter pages, each with ``lines`` lines of 11 pt Helvetica prose;
    ``marker`` opens the first page so the extracted text can be checked."""
    rng = random.Random(seed)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 "]
    objects[2] += b"/BaseFont /Helvetica >>"
    kids = []
    for page in range(pages):
        words = [marker] if page == 0 else []
        text_lines = []
        for _ in range(lines):
            words += [rng.choice(_WORDS) for _ in range(12)]
            text_lines.append(" ".join(words))
            words = []
        ops = ["BT /F1 11 Tf 13 TL 56 740 Td"] + [f"({line}) '" for line in text_lines] + ["ET"]
        content = "\n".join(ops).encode("latin-1")
        page_id = len(objects) + 1
        kids.append(f"{page_id} 0 R")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {pages} >>".encode()
    return _assemble(objects)


def _assemble(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def scanned_pdf(pages: int, marker: str, seed: int = 0) -> bytes:
    """An image-only PDF (no text layer): each page a 150 dpi bitmap of eight lines of text."""
    rng = random.Random(seed)
    font = ImageFont.load_default(size=44)
    images = []
    for page in range(pages):
        image = Image.new("L", (1275, 900), 255)  # 8.5 x 6 inches at 150 dpi
        draw = ImageDraw.Draw(image)
        for line in range(8):
            words = [rng.choice(_WORDS) for _ in range(5)]
            if page == 0 and line == 0:
                words[0] = marker
            draw.text((60, 50 + line * 100), " ".join(words), fill=0, font=font)
        images.append(image)
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", resolution=150, save_all=True, append_images=images[1:])
    return buffer.getvalue()
