"""Is this head of a file text, and which kind: plain, Markdown or CSV? Used by ``file_types``.

Text is what decodes as UTF-8 (or UTF-16 with a byte order mark) without NUL bytes and with few
control characters. The kind comes from simple content heuristics; the file extension only breaks
a tie.
"""

from __future__ import annotations

import codecs
import re

TEXT_PLAIN = "text/plain"
TEXT_MARKDOWN = "text/markdown"
TEXT_CSV = "text/csv"

_EXTENSIONS = {
    "md": TEXT_MARKDOWN,
    "markdown": TEXT_MARKDOWN,
    "csv": TEXT_CSV,
    "tsv": TEXT_CSV,
    "txt": TEXT_PLAIN,
    "text": TEXT_PLAIN,
}
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\x1b")
# WHATWG MIME sniffing: markup that browsers would render, recognised at the start of the text
_HTML = re.compile(
    r"<(!doctype\s+html|html|head|body|script|iframe|h1|div|font|table|a|style|title|b|br|p"
    r"|!--)[\s>/]",
    re.IGNORECASE,
)
_MARKDOWN_FEATURES = (
    re.compile(r"^#{1,6} \S", re.MULTILINE),  # heading
    re.compile(r"^(```|~~~)", re.MULTILINE),  # code fence
    re.compile(r"^\s{0,3}([-*+]|\d{1,3}[.)]) \S", re.MULTILINE),  # list item
    re.compile(r"\[[^\]\n]+\]\([^)\s]+\)"),  # link
    re.compile(r"(\*\*|__)\S[^\n]*?\S\1"),  # bold
    re.compile(r"^> \S", re.MULTILINE),  # quote
    re.compile(r"^\|?\s*:?-{3,}:?\s*\|", re.MULTILINE),  # table rule
)
# no "|": it would take Markdown tables for CSV
_CSV_DELIMITERS = (",", ";", "\t")


def decode_text(head: bytes) -> str | None:
    """``head`` decoded as text, or None when it is not text. A multi-byte sequence cut at the
    end of the head is tolerated: the head is usually a prefix of a longer file."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    if not text and head:
        return None  # nothing but a lone BOM or a cut sequence: not enough to tell
    if "\x00" in text:
        return None
    controls = sum(1 for ch in text if _is_control(ch))
    return text if controls * 50 <= len(text) else None


def _is_control(ch: str) -> bool:
    return (ch < " " or "\x7f" <= ch < "\xa0") and ch not in _ALLOWED_CONTROLS


def refused_markup(text: str) -> str | None:
    """The type of markup that must not pass as text (HTML, SVG, XML), or None."""
    start = text.lstrip()[:512]
    if _HTML.match(start):
        return "text/html"
    lowered = start.lower()
    if lowered.startswith("<svg") or (lowered.startswith("<?xml") and "<svg" in lowered):
        return "image/svg+xml"
    if lowered.startswith("<?xml"):
        return "application/xml"
    return None


def text_kind(text: str, filename: str) -> str:
    """``text/markdown``, ``text/csv`` or ``text/plain``."""
    markdown = sum(1 for feature in _MARKDOWN_FEATURES if feature.search(text))
    csv = _csv_score(text)
    if markdown >= 2 and csv < 2:
        return TEXT_MARKDOWN
    if csv >= 2 and markdown < 2:
        return TEXT_CSV
    by_name = _EXTENSIONS.get(filename.rsplit(".", 1)[-1].lower()) if "." in filename else None
    if by_name is not None:
        return by_name
    # weak signs of CSV (one or two lines) are as likely prose with commas
    return TEXT_MARKDOWN if markdown else TEXT_PLAIN


def _csv_score(text: str) -> int:
    """2: at least three lines with the same number (> 0) of one delimiter, or two lines with
    the same number (> 1); 1: fewer such lines; 0: no sign of CSV."""
    lines = text.splitlines()
    if len(lines) > 2 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # probably cut by the end of the head
    lines = [line for line in lines[:50] if line.strip()]
    if not lines:
        return 0
    best = 0
    for delimiter in _CSV_DELIMITERS:
        counts = {_count_outside_quotes(line, delimiter) for line in lines}
        if len(counts) == 1 and counts != {0}:
            strong = len(lines) >= 3 or (len(lines) == 2 and counts != {1})
            best = max(best, 2 if strong else 1)
    return best


def _count_outside_quotes(line: str, delimiter: str) -> int:
    count, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == delimiter and not quoted:
            count += 1
    return count
