"""What an uploaded file is, decided from its first bytes (magic numbers), never from its name
or the client's Content-Type: both are under the client's control.

``detect(head, filename)`` takes the first few kilobytes of the content. The file name only breaks
ties between text kinds (Markdown, CSV, plain) when the content leaves the question open.
"""

from __future__ import annotations

from enum import StrEnum

from whalli.domain.model.base import Value
from whalli.domain.model.errors import UnsupportedFileType
from whalli.domain.model.text_sniffing import decode_text, refused_markup, text_kind

HEAD_SIZE = 8192  # how many leading bytes callers should pass to ``detect``


class FileKind(StrEnum):
    PDF = "pdf"
    IMAGE = "image"
    AUDIO = "audio"
    TEXT = "text"


class DetectedType(Value, frozen=True, kw_only=True):
    kind: FileKind
    mime: str


_M4A_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P "})
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# Recognised only to name them in the refusal.
_REFUSED_SIGNATURES = (
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"PK\x07\x08", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BZh", "application/x-bzip2"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"(\xb5/\xfd", "application/zstd"),
    (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", "application/vnd.rar"),
    (b"\x7fELF", "application/x-executable"),
    (b"MZ", "application/x-msdownload"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    (b"II+\x00", "image/tiff"),  # BigTIFF: Tesseract cannot read it
    (b"MM\x00+", "image/tiff"),
    (b"BM", "image/bmp"),
    (b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (b"8BPS", "image/vnd.adobe.photoshop"),
    (b"fLaC", "audio/flac"),
    (b"SQLite format 3\x00", "application/vnd.sqlite3"),
)
# text formats that are not the text we take
_REFUSED_TEXT_SIGNATURES = (
    (b"{\\rtf", "application/rtf"),
    (b"%!PS", "application/postscript"),
)


def detect(head: bytes, filename: str = "") -> DetectedType:
    """The supported type of content starting with ``head``; ``UnsupportedFileType`` otherwise,
    its ``details["mime"]`` naming what the content looks like."""
    if not head:
        raise _refuse("application/x-empty", "The file is empty.")
    found = _binary(head)
    if found is not None:
        return found
    for signature, mime in _REFUSED_TEXT_SIGNATURES:
        if head.startswith(signature):
            raise _refuse(mime)
    text = decode_text(head)
    if text is None:
        # after the text test: "BM", "MZ" or "BZh" also start ordinary sentences
        for signature, mime in _REFUSED_SIGNATURES:
            if head.startswith(signature):
                raise _refuse(mime)
        raise _refuse("application/octet-stream")
    markup = refused_markup(text)
    if markup is not None:
        raise _refuse(markup)
    return DetectedType(kind=FileKind.TEXT, mime=text_kind(text, filename))


def _refuse(mime: str, message: str | None = None) -> UnsupportedFileType:
    return UnsupportedFileType(message or f"Files of type {mime} are not supported.", mime=mime)


def _binary(head: bytes) -> DetectedType | None:
    if head.lstrip(b"\t\n\r ").startswith(b"%PDF-"):
        return DetectedType(kind=FileKind.PDF, mime="application/pdf")
    for signature, mime in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return DetectedType(kind=FileKind.IMAGE, mime=mime)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return DetectedType(kind=FileKind.IMAGE, mime="image/webp")
    audio = _audio(head)
    return None if audio is None else DetectedType(kind=FileKind.AUDIO, mime=audio)


def _audio(head: bytes) -> str | None:
    if head[:4] == b"RIFF":
        if head[8:12] == b"WAVE":
            return "audio/wav"
        raise _refuse("video/x-msvideo" if head[8:12] == b"AVI " else "application/x-riff")
    if _is_id3(head) or _is_mp3_frame(head):
        return "audio/mpeg"
    if head.startswith(b"OggS"):
        if b"OpusHead" in head[:512] or b"\x01vorbis" in head[:512]:
            return "audio/ogg"
        raise _refuse("application/ogg")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        doctype = _ebml_doctype(head)
        if doctype == b"webm":
            return "audio/webm"
        if doctype == b"matroska":
            return "audio/x-matroska"
        raise _refuse("application/x-ebml")
    if head[4:8] == b"ftyp":
        return _ftyp(head)
    return None


def _ftyp(head: bytes) -> str:
    box_size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(box_size, len(head), 64), 4)}
    if major in _M4A_BRANDS or compatible & _M4A_BRANDS:
        return "audio/mp4"
    if major in {b"heic", b"heix", b"mif1", b"msf1"}:
        raise _refuse("image/heic")
    if major == b"avif":
        raise _refuse("image/avif")
    if major == b"qt  ":
        raise _refuse("video/quicktime")
    raise _refuse("video/mp4")


def _ebml_doctype(head: bytes) -> bytes:
    """The DocType element (ID 0x4282) of an EBML header, when its size fits in one byte."""
    at = head.find(b"\x42\x82", 4, 64)
    if at < 0 or len(head) < at + 3 or not head[at + 2] & 0x80:
        return b""
    size = head[at + 2] & 0x7F
    return head[at + 3 : at + 3 + size]


def _is_id3(head: bytes) -> bool:
    """An ID3v2 tag: "ID3", a major version 2 to 4, and a size of four 7-bit bytes."""
    return (
        len(head) >= 10
        and head.startswith(b"ID3")
        and head[3] in (2, 3, 4)
        and all(byte < 0x80 for byte in head[6:10])
    )


def _is_mp3_frame(head: bytes) -> bool:
    """An MPEG audio Layer III frame header: 11 sync bits, a real version, layer III, a valid
    bitrate and sample rate (Layer I/II and ADTS AAC are left out: those are not MP3)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 0b11
    return version != 0b01 and layer == 0b01 and bitrate not in (0, 15) and sample_rate != 0b11
