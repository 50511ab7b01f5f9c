"""The opaque page cursor of chat lists: the (``updated_at``, id) of the last chat of a page
(file lists use it too, with a file's ``created_at``).

Encoded as URL-safe base64 (no padding) of 8 bytes of microseconds since the epoch followed by
the 16 bytes of the id, so it travels in a query string as is. Anything that does not decode to
exactly that (tampered, truncated, another encoding of the same bytes) is ``InvalidInput``.
"""

from __future__ import annotations

import base64
import binascii
import struct
from datetime import UTC, datetime, timedelta
from uuid import UUID

from whalli.domain.model.errors import InvalidInput

Position = tuple[datetime, UUID]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_LAYOUT = struct.Struct(">q16s")


def encode_cursor(position: Position) -> str:
    updated_at, chat_id = position
    micros = (updated_at - _EPOCH) // _MICROSECOND
    raw = _LAYOUT.pack(micros, chat_id.bytes)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> Position:
    """Raises ``InvalidInput`` (field ``cursor``) for anything ``encode_cursor`` did not make."""
    try:
        text = cursor.encode("ascii")
        raw = base64.b64decode(text + b"=" * (-len(text) % 4), altchars=b"-_", validate=True)
        micros, id_bytes = _LAYOUT.unpack(raw)
        position = (_EPOCH + micros * _MICROSECOND, UUID(bytes=id_bytes))
    except (UnicodeEncodeError, binascii.Error, struct.error, OverflowError, ValueError):
        raise InvalidInput("This cursor is not valid.", field="cursor") from None
    if encode_cursor(position) != cursor:  # one cursor per position: no aliases to probe with
        raise InvalidInput("This cursor is not valid.", field="cursor")
    return position
