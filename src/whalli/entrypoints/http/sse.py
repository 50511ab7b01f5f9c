"""Server-sent events framing (WHATWG HTML, "Server-sent events", the event stream format).

A parser splits the stream into lines on CRLF, a lone CR or a lone LF, takes everything after a
line's first colon as the value (one leading space removed), joins ``data`` lines with LF and
dispatches on a blank line. So any text survives if it is written as one ``data:`` line per line
of the text, split on exactly those three terminators (not ``str.splitlines``, which also splits on
U+2028, form feeds and others that a parser keeps inside a line). A value is always written after
"``: ``", so a value that begins with a space or a colon keeps it.

The format itself cannot tell the three terminators apart: a client joins ``data`` lines with LF,
so CRLF and a lone CR in raw ``data`` arrive as LF (every other character arrives unchanged). Text
that must survive byte for byte goes through ``json_event``: JSON escapes CR and LF, so any string
in the payload round-trips exactly. Whalli's events (``token``, ``done``, ``error``) are all JSON.

``id`` and ``event`` values cannot hold a line terminator (it would end the field early), and a
parser ignores an ``id`` holding U+0000; those raise ``ValueError`` here instead of corrupting the
stream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import msgspec

MEDIA_TYPE: Final = "text/event-stream"
# no-cache: browsers and proxies must not store the stream; X-Accel-Buffering: nginx (and Traefik
# setups copying it) would otherwise buffer the whole reply and deliver it as one blob.
HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
)
HEARTBEAT: Final = "ping"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_json = msgspec.json.Encoder()


def encode_event(
    *,
    data: str,
    event: str | None = None,
    id: str | None = None,
    retry_ms: int | None = None,
) -> bytes:
    """One complete event, ending with the blank line that makes a client dispatch it.

    Raises ``ValueError`` for an ``event`` or ``id`` holding a line terminator, an ``id`` holding
    U+0000, a negative ``retry_ms``, or text that is not valid Unicode (a lone surrogate).
    """
    parts: list[str] = []
    if event is not None:
        _check_single_line("event", event)
        parts.append(f"event: {event}\n")
    if id is not None:
        _check_single_line("id", id)
        if "\0" in id:
            raise ValueError("an SSE id cannot contain U+0000 (clients would ignore it)")
        parts.append(f"id: {id}\n")
    if retry_ms is not None:
        if isinstance(retry_ms, bool) or retry_ms < 0:
            raise ValueError("retry_ms must be a non-negative integer")
        parts.append(f"retry: {int(retry_ms)}\n")
    if "\n" in data or "\r" in data:
        parts.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    else:
        # The common case (one JSON token event) skips the regex.
        parts.append(f"data: {data}\n")
    parts.append("\n")
    try:
        return "".join(parts).encode()
    except UnicodeEncodeError as e:
        raise ValueError("SSE text must be valid Unicode (it holds a lone surrogate)") from e


def json_event(event: str, payload: object, id: str | None = None) -> bytes:
    """An event whose data is ``payload`` as JSON (one line: JSON escapes line breaks)."""
    return encode_event(data=_json.encode(payload).decode(), event=event, id=id)


def encode_comment(text: str = HEARTBEAT) -> bytes:
    """A comment (``: ping``): clients ignore it; it keeps idle connections and proxies alive.

    Each line of ``text`` becomes its own comment line, so a line break cannot start a field.
    """
    lines = "".join(f": {line}\n" for line in _LINE_BREAK.split(text))
    return (lines + "\n").encode()


def _check_single_line(field: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an SSE {field} cannot contain a line break")
