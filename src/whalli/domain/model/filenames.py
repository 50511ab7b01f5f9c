"""Client file names, made safe to keep as metadata and to send back in a download.

The name never becomes a storage key (keys are generated), but it is shown in the UI, written to
disk by browsers and echoed in ``Content-Disposition``: so no directories, no control characters,
no names Windows refuses, and a bounded length.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

MAX_BYTES = 255
_MAX_EXTENSION_BYTES = 32
# Cc: C0/C1 controls and NUL; Cf: bidi overrides and other invisible format characters that
# disguise names ("invoice\u202efdp.exe"); Zl/Zp: line breaks; Cs: lone surrogates (not UTF-8).
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])$", re.IGNORECASE)
# RFC 5987 attr-char, less what ``quote`` always keeps (letters, digits, "_.-~")
_ATTR_CHAR_SAFE = "!#$&+^`|"


def sanitize_filename(raw: str) -> str:
    """A safe version of ``raw``: its last path component, NFC, without control or format
    characters, Windows-forbidden characters replaced by ``_``, no trailing dots or spaces, no
    Windows device name, at most 255 UTF-8 bytes (keeping the extension); ``"file"`` when
    nothing is left."""
    name = unicodedata.normalize("NFC", raw)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _WINDOWS_FORBIDDEN.sub("_", name)
    name = unicodedata.normalize("NFC", name).strip().rstrip(". ")
    if not name:
        return "file"
    if _WINDOWS_RESERVED.match(name.split(".", 1)[0].rstrip(" ")):
        name = "_" + name  # Windows reserves "con", "con.txt" and "con.tar.gz" alike
    return _truncate(*_split(name))


def download_name(title: str, extension: str) -> str:
    """The name of a download named after a title (a chat's export): its slashes kept as
    ``_`` (a title is not a path), sanitized, ``file`` when nothing visible is left."""
    return f"{sanitize_filename(title.replace('/', '_').replace(chr(92), '_'))}.{extension}"


def content_disposition(filename: str) -> str:
    """A ``Content-Disposition: attachment`` value per RFC 6266: an ASCII fallback in
    ``filename`` and the exact (sanitized) UTF-8 name in ``filename*`` (RFC 5987)."""
    name = sanitize_filename(filename)
    encoded = quote(name, safe=_ATTR_CHAR_SAFE, encoding="utf-8")
    return f"attachment; filename=\"{ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"


def ascii_fallback(name: str) -> str:
    """Printable ASCII for old clients: accents dropped, other characters replaced by ``_``,
    never a quote or backslash (they would end the quoted string) nor a percent sign (some
    clients percent-decode the fallback)."""
    stem, extension = _split(name)
    stem, extension = _ascii(stem), _ascii(extension)
    if not stem.strip("_ ."):
        stem = "file"
    return stem + extension


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(ch if " " <= ch <= "~" and ch not in '"\\%' else "_" for ch in kept)


def _split(name: str) -> tuple[str, str]:
    """(stem, extension with its dot); a leading dot ("".bashrc") is not an extension."""
    dot = name.rfind(".")
    if dot <= 0 or len(name[dot:].encode()) > _MAX_EXTENSION_BYTES:
        return name, ""
    return name[:dot], name[dot:]


def _truncate(stem: str, extension: str) -> str:
    budget = MAX_BYTES - len(extension.encode())
    encoded = stem.encode()
    if len(encoded) > budget:
        stem = encoded[:budget].decode("utf-8", errors="ignore")
        # cutting may leave a base character whose combining mark is gone: still NFC, but a
        # trailing dot or space may now end the name
        stem = unicodedata.normalize("NFC", stem).rstrip(". ") or "file"
        while len((stem + extension).encode()) > MAX_BYTES:
            stem = stem[:-1].rstrip(". ")
    return stem + extension
