from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.domain.model.filenames import content_disposition, sanitize_filename


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("C:\\Users\\ada\\notes.txt", "notes.txt"),
        ("dir/", "file"),
        ("..", "file"),
        (".", "file"),
        ("", "file"),
        ("   ", "file"),
        ("a\x00b\nc\r\x1fd.txt", "abcd.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("name. . .", "name"),
        ("name.txt   ", "name.txt"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("lpt1.tar.gz", "_lpt1.tar.gz"),
        ("console.txt", "console.txt"),
        ('a<b>c:d"e|f?g*h.txt', "a_b_c_d_e_f_g_h.txt"),
        ("e\u0301te\u0301.md", "été.md"),
        ("日本語のファイル.pdf", "日本語のファイル.pdf"),
        (".bashrc", ".bashrc"),
    ],
)
def test_sanitized_names(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_long_names_are_cut_to_255_bytes_keeping_the_extension() -> None:
    name = sanitize_filename("é" * 300 + ".pdf")
    assert name.endswith(".pdf")
    assert len(name.encode()) <= 255
    assert name == "é" * 125 + ".pdf"


def test_content_disposition_carries_an_ascii_fallback_and_the_utf8_name() -> None:
    assert content_disposition("Résumé 2024.pdf") == (
        "attachment; filename=\"Resume 2024.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%202024.pdf"
    )


def test_content_disposition_of_a_name_without_ascii_letters_falls_back_to_file() -> None:
    assert content_disposition("日本語.pdf").startswith('attachment; filename="file.pdf"; ')


def test_content_disposition_sanitizes_what_it_is_given() -> None:
    value = content_disposition('../evil"\r\nSet-Cookie: x=1.txt')
    assert value.startswith('attachment; filename="evil_Set-Cookie_ x=1.txt"; ')


HEADER = re.compile(r'attachment; filename="([ !#-\[\]-~]*)"; filename\*=UTF-8\'\'(\S+)')
FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f-\x9f]")


@given(st.text())
def test_sanitized_names_are_always_safe(raw: str) -> None:
    name = sanitize_filename(raw)
    assert not FORBIDDEN.search(name)
    assert name not in {"", ".", ".."}
    assert not name.endswith((".", " "))
    assert len(name.encode("utf-8")) <= 255
    assert unicodedata.is_normalized("NFC", name)
    assert sanitize_filename(name) == name


@given(st.text())
def test_content_disposition_is_one_header_line_that_round_trips_the_name(raw: str) -> None:
    value = content_disposition(raw)
    assert "\r" not in value
    assert "\n" not in value
    assert value.isascii()
    match = re.fullmatch(
        r'attachment; filename="([ !#-\[\]-~]*)"; filename\*=UTF-8\'\'(\S+)', value
    )
    assert match is not None
    assert unquote(match.group(2), encoding="utf-8", errors="strict") == sanitize_filename(raw)
