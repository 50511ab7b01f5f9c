"""Which charset reads a whole text file, told while its bytes pass in pieces."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.domain.model.text_charsets import CharsetCheck


def charset_of(data: bytes, size: int) -> str | None:
    check = CharsetCheck(data[:8192])
    for start in range(0, len(data), size):
        check.feed(data[start : start + size])
    return check.charset()


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1)


@given(TEXT, st.integers(min_value=1, max_value=7))
def test_utf8_text_is_utf8_wherever_its_pieces_cut_a_character(text: str, size: int) -> None:
    assert charset_of(text.encode("utf-8"), size) == "utf-8"


@given(TEXT, st.sampled_from(["utf-16-le", "utf-16-be"]), st.integers(1, 7))
def test_utf16_text_with_a_byte_order_mark_is_utf16(text: str, order: str, size: int) -> None:
    bom = codecs.BOM_UTF16_LE if order.endswith("le") else codecs.BOM_UTF16_BE
    data = bom + text.encode(order)
    assert charset_of(data, size) == "utf-16"
    assert data.decode("utf-16") == text


@pytest.mark.parametrize(
    "data",
    [
        b"Plain ascii head\n" * 10 + "café".encode("latin-1"),  # Latin-1 after a UTF-8 head
        "ends cut: é".encode()[:-1],  # the last character is not complete
        codecs.BOM_UTF16_LE + "odd".encode("utf-16-le") + b"x",  # half a UTF-16 unit
        codecs.BOM_UTF16_LE + b"\x00\xd8a\x00",  # a lone surrogate
    ],
    ids=["latin1-later", "cut-utf8", "odd-utf16", "lone-surrogate"],
)
def test_text_not_read_whole_by_one_charset_has_none(data: bytes) -> None:
    assert charset_of(data, 3) is None


def test_a_utf8_byte_order_mark_is_still_utf8() -> None:
    assert charset_of(codecs.BOM_UTF8 + "Résumé".encode(), 2) == "utf-8"
