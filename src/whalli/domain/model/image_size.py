"""An image's width and height in pixels, read from its header without decoding the image.

Where each format says it: PNG in its IHDR chunk (the first, at byte 16), GIF in its logical
screen descriptor (byte 6), JPEG in its first SOFn segment (after any APPn, DQT, DHT ...
segments, walked by their lengths), WebP in its first chunk (``VP8 `` lossy, ``VP8L`` lossless,
``VP8X`` extended: the canvas). The bytes are read through ``read(offset, size)``, so a
``data:`` URL's base64 is decoded only where the header is (``data_url_size``), a few bytes
per JPEG segment. ``None`` when the size cannot be read: not one of these formats, a header
cut short or malformed.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

Read = Callable[[int, int], bytes]  # (offset, size) -> at most size bytes from offset

_PNG = b"\x89PNG\r\n\x1a\n"
# SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC), which share the range
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: markers without a length
_MAX_SEGMENTS = 1_000  # a JPEG walked further is taken as unreadable


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of the image in ``data``."""
    return size_of(lambda at, size: data[at : at + size])


def data_url_size(data: str) -> tuple[int, int] | None:
    """(width, height) of the image whose base64 text is ``data`` (a data URL's data)."""
    return size_of(base64_reader(data))


def base64_reader(data: str) -> Read:
    """A ``Read`` of the bytes the base64 text ``data`` holds: each read decodes only the
    quadruplets holding the bytes asked for (none past invalid base64)."""

    def read(at: int, size: int) -> bytes:
        first, start = divmod(at, 3)
        quads = -(-(start + size) // 3)
        try:
            chunk = binascii.a2b_base64(data[first * 4 : (first + quads) * 4], strict_mode=True)
        except binascii.Error:
            return b""
        return chunk[start : start + size]

    return read


def size_of(read: Read) -> tuple[int, int] | None:
    """(width, height) of the image ``read`` reads (see the module docstring)."""
    head = read(0, 30)
    if head.startswith(_PNG) and head[12:16] == b"IHDR" and len(head) >= 24:
        return _positive(int.from_bytes(head[16:20]), int.from_bytes(head[20:24]))
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return _positive(int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little"))
    if head[:2] == b"\xff\xd8":
        return _jpeg(read)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(head)
    return None


def _jpeg(read: Read) -> tuple[int, int] | None:
    at = 2
    for _ in range(_MAX_SEGMENTS):
        marker = read(at, 2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if kind in _STANDALONE:
            at += 2
            continue
        if kind in (0xD9, 0xDA):  # the image's end, or its data, before any frame header
            return None
        segment = read(at + 2, 7)
        if len(segment) < 2:
            return None
        if kind in _SOF:
            if len(segment) < 7:
                return None
            return _positive(int.from_bytes(segment[5:7]), int.from_bytes(segment[3:5]))
        at += 2 + int.from_bytes(segment[:2])
    return None


def _webp(head: bytes) -> tuple[int, int] | None:
    kind, frame = head[12:16], head[20:30]
    if kind == b"VP8 " and len(frame) >= 10 and frame[3:6] == b"\x9d\x01\x2a":
        width = int.from_bytes(frame[6:8], "little") & 0x3FFF
        return _positive(width, int.from_bytes(frame[8:10], "little") & 0x3FFF)
    if kind == b"VP8L" and len(frame) >= 5 and frame[0] == 0x2F:
        bits = int.from_bytes(frame[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(frame) >= 10:
        return int.from_bytes(frame[4:7], "little") + 1, int.from_bytes(frame[7:10], "little") + 1
    return None


def _positive(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None
