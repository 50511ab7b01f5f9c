"""An image's size in pixels read from its header (PNG, GIF, JPEG, WebP), as encoded by Pillow,
and from a data URL's base64 decoding only the bytes the header needs."""

from __future__ import annotations

import base64
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from whalli.domain.model.image_size import base64_reader, data_url_size, image_size, size_of


def encoded(fmt: str, width: int, height: int, **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("GIF", {}),
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),  # SOF2
        ("WEBP", {}),  # VP8
        ("WEBP", {"lossless": True}),  # VP8L
        ("WEBP", {"exif": b"Exif\x00\x00" + bytes(40)}),  # VP8X
    ],
    ids=["png", "gif", "jpeg", "progressive-jpeg", "webp-lossy", "webp-lossless", "webp-extended"],
)
@pytest.mark.parametrize(("width", "height"), [(1, 1), (640, 480), (37, 1201)])
def test_the_size_is_read_from_each_formats_header(
    fmt: str, options: dict[str, object], width: int, height: int
) -> None:
    data = encoded(fmt, width, height, **options)

    assert image_size(data) == (width, height)
    assert data_url_size(base64.b64encode(data).decode()) == (width, height)


def test_a_jpeg_frame_after_large_segments_and_fill_bytes_is_found_reading_only_headers() -> None:
    jpeg = encoded("JPEG", 300, 200)
    app = b"\xff\xe1" + (60_002).to_bytes(2) + bytes(60_000)  # an EXIF-sized APP1
    data = jpeg[:2] + app + b"\xff\xff" + app + jpeg[2:]
    read: list[int] = []

    def reader(at: int, size: int) -> bytes:
        read.append(size)
        return data[at : at + size]

    assert size_of(reader) == (300, 200)
    assert sum(read) < 100


def test_a_header_claiming_a_huge_image_is_read_as_claimed() -> None:
    png = b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4) + b"IHDR" + (9000).to_bytes(4) * 2 + bytes(9)

    assert image_size(png) == (9000, 9000)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all, only text",
        b"\x89PNG\r\n\x1a\n",  # cut short
        b"GIF89a\x00",
        b"\xff\xd8\xff\xda" + bytes(20),  # image data before any frame header
        b"\xff\xd8\xff\xe0\x00\x10JFIF",  # cut inside its segments
        b"RIFF\x00\x10\x00\x00WEBPVP8 " + bytes(256),  # no VP8 start code
        b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4) + b"IHDR" + bytes(17),  # 0x0
    ],
)
def test_a_size_that_cannot_be_read_is_none(data: bytes) -> None:
    assert image_size(data) is None
    assert data_url_size(base64.b64encode(data).decode()) is None


def test_data_that_is_not_base64_has_no_size() -> None:
    assert data_url_size("iVBORw0KGgo!!!!" * 8) is None


@given(st.binary(max_size=200), st.integers(0, 210), st.integers(0, 40))
def test_a_base64_read_gives_the_decoded_bytes_at_that_place(
    data: bytes, at: int, size: int
) -> None:
    read = base64_reader(base64.b64encode(data).decode())

    assert read(at, size) == data[at : at + size]
