"""Documents built by the tests themselves: hand-written PDFs (text, multi-page, encrypted), and
images with text drawn in them."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

from PIL import Image, ImageDraw, ImageFont

# the 32-byte padding of the PDF standard security handler (ISO 32000-1, 7.6.3.3)
_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")
_FILE_ID = bytes.fromhex("5768616c6c69546573745044463031")


def text_pdf(*pages: str) -> bytes:
    """A valid PDF with one Helvetica text line per page."""
    return _pdf(pages)


def encrypted_pdf(text: str, user_password: str = "secret") -> bytes:
    """A PDF encrypted with RC4 40-bit (standard handler, revision 2) under ``user_password``."""
    return _pdf((text,), user_password=user_password)


def scanned_pdf(*lines: str) -> bytes:
    """An image-only PDF, like a scanner makes: no text layer, the text is pixels."""
    buffer = io.BytesIO()
    text_image(*lines).save(buffer, format="PDF", resolution=150)
    return buffer.getvalue()


def text_image(*lines: str, size: tuple[int, int] = (1400, 500)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=56)
    for number, line in enumerate(lines):
        draw.text((60, 60 + number * 110), line, fill="black", font=font)
    return image


def image_bytes(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def circular_form_pdf() -> bytes:
    """A page drawing a form XObject that draws itself."""
    form = b"BT /F1 12 Tf 10 10 Td (loop) Tj ET /X1 Do"
    resources = b"/Resources << /Font << /F1 3 0 R >> /XObject << /X1 6 0 R >> >>"
    return _assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] %s /Contents 5 0 R >>"
            % resources,
            b"<< /Length 6 >>\nstream\n/X1 Do\nendstream",
            b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] %s /Length %d >>\nstream\n"
            % (resources, len(form))
            + form
            + b"\nendstream",
        ],
        b"",
    )


def flate_bomb_pdf(inflated_bytes: int) -> bytes:
    """A page whose content stream inflates to ``inflated_bytes`` of spaces."""
    compressor = zlib.compressobj(1)
    chunk = b" " * (1 << 20)
    data = b"".join(compressor.compress(chunk) for _ in range(inflated_bytes >> 20))
    data += compressor.flush()
    return _assemble(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream",
        ],
        b"",
    )


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _pdf(pages: tuple[str, ...], user_password: str | None = None) -> bytes:
    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    key = None
    trailer = b""
    if user_password is not None:
        owner, user, key, permissions = _rc4_security(user_password)
        encrypt_id = 4 + 2 * count
        trailer = b"/Encrypt %d 0 R /ID [<%s> <%s>] " % (
            encrypt_id,
            _FILE_ID.hex().encode(),
            _FILE_ID.hex().encode(),
        )
    for index, text in enumerate(pages):
        page_id = 4 + 2 * index
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        content = f"BT /F1 24 Tf 72 700 Td ({escaped}) Tj ET".encode("latin-1")
        if key is not None:
            content = _rc4(_object_key(key, page_id + 1), content)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    if user_password is not None:
        objects.append(
            b"<< /Filter /Standard /V 1 /R 2 /Length 40 /O <%s> /U <%s> /P %d >>"
            % (owner.hex().encode(), user.hex().encode(), permissions)
        )
    return _assemble(objects, trailer)


def _assemble(objects: list[bytes], trailer: bytes) -> bytes:
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\n" % (len(objects) + 1, trailer)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _rc4_security(user_password: str) -> tuple[bytes, bytes, bytes, int]:
    """(O, U, file key, P) per algorithms 2, 3 and 4 of the standard security handler."""
    permissions = -44
    user = (user_password.encode("latin-1") + _PAD)[:32]
    owner_key = hashlib.md5(b"owner-password" + _PAD[:18]).digest()[:5]  # noqa: S324
    owner_entry = _rc4(owner_key, user)
    digest = hashlib.md5(  # noqa: S324 - the PDF format's own choice
        user + owner_entry + struct.pack("<i", permissions) + _FILE_ID
    ).digest()
    key = digest[:5]
    return owner_entry, _rc4(key, _PAD), key, permissions


def _object_key(key: bytes, number: int) -> bytes:
    material = key + number.to_bytes(3, "little") + (0).to_bytes(2, "little")
    return hashlib.md5(material).digest()[: len(key) + 5]  # noqa: S324


def _rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)
