from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.domain.model.errors import UnsupportedFileType
from whalli.domain.model.file_types import DetectedType, FileKind, detect


def png_header(width: int = 1, height: int = 1) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def riff(form: bytes, body: bytes = b"") -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + form + body


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00\x00\x00\x08free"


def ogg_page(packet: bytes) -> bytes:
    header = b"OggS\x00\x02" + b"\x00" * 8 + b"\x01\x00\x00\x00" + b"\x00" * 8
    return header + bytes([1, len(packet)]) + packet


WAV = riff(b"WAVE", b"fmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00")
EBML_WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\x82\x84webm\x42\x87\x81\x04"
EBML_MKV = b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska\x42\x87\x81\x04"

SUPPORTED = [
    ("a PDF", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", FileKind.PDF, "application/pdf"),
    ("a PNG", png_header(), FileKind.IMAGE, "image/png"),
    ("a JPEG", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01", FileKind.IMAGE, "image/jpeg"),
    ("a WebP", riff(b"WEBP", b"VP8 \x00\x00\x00\x00"), FileKind.IMAGE, "image/webp"),
    ("a little-endian TIFF", b"II*\x00\x08\x00\x00\x00", FileKind.IMAGE, "image/tiff"),
    ("a big-endian TIFF", b"MM\x00*\x00\x00\x00\x08", FileKind.IMAGE, "image/tiff"),
    ("a GIF87a", b"GIF87a\x01\x00\x01\x00\x80\x00\x00", FileKind.IMAGE, "image/gif"),
    ("a GIF89a", b"GIF89a\x01\x00\x01\x00\x80\x00\x00", FileKind.IMAGE, "image/gif"),
    ("a WAV", WAV, FileKind.AUDIO, "audio/wav"),
    ("an MP3 with ID3", b"ID3\x04\x00\x00\x00\x00\x00\x23TSSE", FileKind.AUDIO, "audio/mpeg"),
    ("an MP3 frame", b"\xff\xfb\x90\x64" + b"\x00" * 60, FileKind.AUDIO, "audio/mpeg"),
    ("an MPEG-2 MP3 frame", b"\xff\xf3\x48\xc4" + b"\x00" * 60, FileKind.AUDIO, "audio/mpeg"),
    ("an Ogg Opus", ogg_page(b"OpusHead\x01\x02\x38\x01"), FileKind.AUDIO, "audio/ogg"),
    ("an Ogg Vorbis", ogg_page(b"\x01vorbis\x00\x00\x00\x00"), FileKind.AUDIO, "audio/ogg"),
    ("a WebM", EBML_WEBM, FileKind.AUDIO, "audio/webm"),
    ("a Matroska", EBML_MKV, FileKind.AUDIO, "audio/x-matroska"),
    ("an M4A", ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), FileKind.AUDIO, "audio/mp4"),
    ("an M4A brand", ftyp(b"mp42", b"isom", b"M4A "), FileKind.AUDIO, "audio/mp4"),
]


@pytest.mark.parametrize(
    ("head", "kind", "mime"), [case[1:] for case in SUPPORTED], ids=[c[0] for c in SUPPORTED]
)
def test_supported_types_are_detected_from_their_magic_bytes(
    head: bytes, kind: FileKind, mime: str
) -> None:
    assert detect(head, "upload.bin") == DetectedType(kind=kind, mime=mime)


REFUSED = [
    ("a zip", b"PK\x03\x04\x14\x00\x00\x00\x08\x00", "application/zip"),
    ("a gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "application/gzip"),
    ("an ELF", b"\x7fELF\x02\x01\x01\x00", "application/x-executable"),
    ("a Windows executable", b"MZ\x90\x00\x03\x00\x00\x00", "application/x-msdownload"),
    ("a plain MP4 video", ftyp(b"isom", b"isom", b"avc1"), "video/mp4"),
    ("a HEIC image", ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
    ("an AVI", riff(b"AVI ", b"LIST"), "video/x-msvideo"),
    ("a Theora Ogg", ogg_page(b"\x80theora\x03\x02"), "application/ogg"),
    ("an HTML page", b"<!DOCTYPE html>\n<html><body>Hi</body></html>", "text/html"),
    ("an HTML fragment", b"  \n<script>alert(1)</script>", "text/html"),
    (
        "an SVG",
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        "image/svg+xml",
    ),
    ("an XML file", b'<?xml version="1.0"?>\n<note>hello</note>', "application/xml"),
    ("an RTF file", b"{\\rtf1\\ansi hello}", "application/rtf"),
    ("binary noise", bytes(range(256)), "application/octet-stream"),
    ("text with NUL bytes", b"hello\x00world", "application/octet-stream"),
    ("an empty file", b"", "application/x-empty"),
]


@pytest.mark.parametrize(("head", "mime"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_other_types_are_refused_naming_the_detected_type(head: bytes, mime: str) -> None:
    with pytest.raises(UnsupportedFileType, match=r".") as caught:
        detect(head, "upload.bin")
    assert caught.value.details["mime"] == mime


def test_html_named_pdf_is_refused_as_html() -> None:
    with pytest.raises(UnsupportedFileType, match="text/html"):
        detect(b"<html><head><title>invoice</title></head></html>", "invoice.pdf")


def test_a_pdf_named_like_an_image_is_still_a_pdf() -> None:
    assert detect(b"%PDF-1.4\n", "photo.png").mime == "application/pdf"


@pytest.mark.parametrize(
    "sentence", ["BMW sales report\n", "MZ-5 manual\n", "ID3 tags explained\n", "BZh, what\n"]
)
def test_sentences_starting_like_a_binary_signature_are_text(sentence: str) -> None:
    assert detect(sentence.encode(), "notes.txt").mime == "text/plain"


def test_a_bitmap_is_refused_as_such() -> None:
    head = b"BM" + (70).to_bytes(4, "little") + b"\x00\x00\x00\x00" + (54).to_bytes(4, "little")
    with pytest.raises(UnsupportedFileType, match="image/bmp"):
        detect(head + b"\x28\x00\x00\x00" + b"\x00" * 40, "a.png")


def test_plain_prose_is_plain_text() -> None:
    head = b"Meeting notes\n\nWe talked about the roadmap and agreed to ship in May.\n"
    assert detect(head, "notes") == DetectedType(kind=FileKind.TEXT, mime="text/plain")


def test_markdown_is_recognised_from_its_syntax_whatever_the_name() -> None:
    head = b"# Title\n\nSome **bold** text and a [link](https://example.com).\n\n- one\n- two\n"
    assert detect(head, "notes.txt").mime == "text/markdown"


def test_csv_is_recognised_from_consistent_delimiters_whatever_the_name() -> None:
    head = b'name,age,city\n"Doe, Jane",34,Paris\nBob,27,Lyon\nEve,41,Nice\n'
    assert detect(head, "export.txt").mime == "text/csv"


def test_semicolon_and_tab_separated_values_are_csv() -> None:
    assert detect(b"a;b;c\n1;2;3\n4;5;6\n", "x").mime == "text/csv"
    assert detect(b"a\tb\n1\t2\n3\t4\n", "x").mime == "text/csv"


def test_a_line_of_prose_with_a_comma_is_not_csv_unless_named_so() -> None:
    assert detect(b"Hello, world\n", "greeting").mime == "text/plain"
    assert detect(b"Hello, world\n", "greeting.csv").mime == "text/csv"


def test_the_extension_breaks_a_tie_between_text_kinds() -> None:
    single_column = b"name\nAda\nGrace\n"
    assert detect(single_column, "people.csv").mime == "text/csv"
    assert detect(single_column, "people.md").mime == "text/markdown"
    assert detect(single_column, "people").mime == "text/plain"


def test_the_extension_does_not_override_clear_content() -> None:
    assert detect(b"# Title\n\n- a\n- b\n", "data.csv").mime == "text/markdown"


def test_a_markdown_table_is_markdown_not_csv() -> None:
    head = b"| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n"
    assert detect(head, "table").mime == "text/markdown"


def test_utf8_with_and_without_bom_and_utf16_with_bom_are_text() -> None:
    text = "Grüße, ça va? 日本語\n"
    assert detect(text.encode(), "a").kind is FileKind.TEXT
    assert detect(b"\xef\xbb\xbf" + text.encode(), "a").kind is FileKind.TEXT
    assert detect(text.encode("utf-16"), "a").kind is FileKind.TEXT
    assert detect(b"\xfe\xff" + text.encode("utf-16-be"), "a").kind is FileKind.TEXT


def test_a_multibyte_character_cut_at_the_end_of_the_head_is_still_text() -> None:
    head = ("x" * 100 + "é").encode()[:-1]
    assert detect(head, "a").kind is FileKind.TEXT


def test_text_with_many_control_characters_is_not_text() -> None:
    with pytest.raises(UnsupportedFileType, match="octet-stream"):
        detect(b"ab\x01\x02\x03\x04cd\x05\x06", "a.txt")


def test_latin1_bytes_that_are_not_utf8_are_not_text() -> None:
    with pytest.raises(UnsupportedFileType, match="octet-stream"):
        detect("Grüße aus Köln\n".encode("latin-1"), "a.txt")


@given(st.binary(max_size=512), st.text(max_size=40))
def test_random_bytes_are_either_detected_or_refused(head: bytes, filename: str) -> None:
    refused: UnsupportedFileType | None = None
    try:
        found = detect(head, filename)
    except UnsupportedFileType as error:
        refused = error
    if refused is not None:
        assert isinstance(refused.details["mime"], str)
    else:
        assert found.mime.split("/")[0] in {"application", "image", "audio", "text"}


@given(st.sampled_from([case[1] for case in SUPPORTED]), st.binary(max_size=256))
def test_supported_headers_win_over_whatever_follows(head: bytes, tail: bytes) -> None:
    expected = detect(head, "x")
    assert detect(head + tail, "x") == expected
