"""Streaming ``multipart/form-data`` reading for uploads, with bounded memory.

The body is parsed as it arrives (``multipart.PushMultipartParser``, strict mode): small form
fields before the file part are collected (at most ``MAX_FIELD_BYTES`` each, each named at most
once, and only those the route takes: any other is a 400 naming it, as an unknown JSON field
is), then the file's bytes are handed on chunk by chunk. The file must be the last part, so
that every field that decides where the file goes (``projectId``) is known before its first
byte.

Errors in the framing (Content-Type, boundary, part headers, truncated body) are 400 problems;
a body larger than the limit is ``AttachmentTooLarge`` (413). A client that goes away before
the body is complete is ``UploadAborted``: logged as ``upload_aborted`` (info), not a server
error; the upload fails like any other, so nothing of it is stored.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Collection

import structlog
from litestar.exceptions import ClientException
from litestar.types import Receive
from multipart import (  # type: ignore[import-untyped]
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
)

from whalli.domain.model.errors import AttachmentTooLarge

FILE_FIELD = "file"
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
# Headers, boundaries and small fields around the file: what a body may carry beyond the file.
FRAMING_ALLOWANCE = 64 * 1024
# RFC 2046 5.1.1: 1 to 70 characters from bchars, not ending with a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_BOUNDARY_PARAM = re.compile(
    r'(?:^|;)\s*boundary\s*=\s*(?:"([^"\\]*)"|([^;"]*))\s*(?:;|$)', re.IGNORECASE
)
_TRANSFER_ENCODINGS = frozenset({"7bit", "8bit", "binary"})

log = structlog.get_logger(__name__)


class UploadAborted(ClientException):
    """The client closed the connection before sending the whole body: its fault, not ours
    (a 400 nobody will read, rather than the 500 Litestar's ``request.stream()`` raises)."""

    def __init__(self) -> None:
        super().__init__("The connection closed before the upload was complete.")


async def request_body(receive: Receive) -> AsyncIterator[bytes]:
    """The request body as it arrives (ASGI ``http.request`` messages); ``UploadAborted`` if
    the client disconnects first."""
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            log.info("upload_aborted", received_bytes=received)
            raise UploadAborted()
        if message["type"] != "http.request":
            continue
        body = message.get("body", b"")
        if body:
            received += len(body)
            yield body
        if not message.get("more_body", False):
            return


def boundary_of(content_type: str | None) -> str:
    """The boundary of a ``multipart/form-data`` Content-Type; 400 unless it is valid.

    Read from the raw header (a quoted string or a token), never repaired: a boundary with a
    character outside RFC 2046's set is refused, not cut short where a lenient parser stops.
    """
    kind, _, params = (content_type or "").partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise ClientException("Send the file as multipart/form-data.")
    found = _BOUNDARY_PARAM.search(params)
    quoted, token = (found.group(1), found.group(2)) if found else (None, None)
    boundary = quoted if quoted is not None else (token or "").strip()
    if not _BOUNDARY.fullmatch(boundary) or (quoted is None and " " in boundary):
        raise ClientException("The multipart boundary is missing or not valid (RFC 2046).")
    return boundary


def check_declared_length(content_length: int | None, max_file_bytes: int) -> None:
    """Refuse at once a body whose announced length cannot hold a file within the limit."""
    if content_length is not None and content_length > max_file_bytes + FRAMING_ALLOWANCE:
        raise _too_large(max_file_bytes)


def _too_large(max_file_bytes: int) -> AttachmentTooLarge:
    return AttachmentTooLarge(
        f"The file is larger than the limit of {max_file_bytes} bytes.",
        limit_bytes=max_file_bytes,
    )


class UploadForm:
    """One upload body: ``await open()`` reads the fields up to the file part's headers, then
    ``file_chunks()`` yields the file's bytes and checks that the body ends properly.
    ``accepted``: the names of the fields the form may carry before the file part."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        boundary: str,
        max_file_bytes: int,
        *,
        accepted: Collection[str] = (),
    ) -> None:
        self._body = body
        self._accepted = frozenset(accepted)
        self._max_body = max_file_bytes + FRAMING_ALLOWANCE
        self._max_file_bytes = max_file_bytes
        self._parser = PushMultipartParser(boundary, max_segment_count=MAX_PARTS, strict=True)
        self._events = self._parse()
        self.fields: dict[str, str] = {}
        self.filename = ""

    async def open(self) -> None:
        """Collect the fields before the file part; 400 when there is no file part."""
        name: str | None = None
        value = bytearray()
        async for event in self._events:
            if isinstance(event, MultipartSegment):
                _check_headers(event)
                if event.name == FILE_FIELD:
                    if event.filename is None:
                        raise ClientException("The file part has no filename.")
                    self.filename = event.filename
                    return
                name, value = self._field_name(event.name), bytearray()
            elif event is None:
                if name is not None:
                    self.fields[name] = _text(value, name)
                name = None
            else:
                value += event
                if len(value) > MAX_FIELD_BYTES:
                    raise ClientException(f"The form field {name!r} is too long.")
        raise ClientException(f"The form has no {FILE_FIELD!r} part.")

    def _field_name(self, name: str) -> str:
        """``name``, when it is a field this form takes and not given already; else a 400."""
        if name not in self._accepted:
            known = ", ".join(repr(n) for n in sorted(self._accepted)) or "no field"
            raise ClientException(
                f"Unknown form field {name!r}: this form takes {known} before the "
                f"{FILE_FIELD!r} part."
            )
        if name in self.fields:
            raise ClientException(f"The form field {name!r} is given more than once.")
        return name

    async def file_chunks(self) -> AsyncGenerator[bytes, None]:
        async for event in self._events:
            if event is None:
                break
            if isinstance(event, bytes):
                yield event
        async for event in self._events:
            if isinstance(event, MultipartSegment):
                raise ClientException(
                    f"The {FILE_FIELD!r} part must be the last part of the form "
                    "(send projectId before it, or as a query parameter)."
                )

    async def _parse(self) -> AsyncIterator[MultipartSegment | bytes | None]:
        received = 0
        try:
            async for chunk in self._body:
                if not chunk:
                    continue
                received += len(chunk)
                if received > self._max_body:
                    raise _too_large(self._max_file_bytes)
                for event in self._parser.parse(chunk):
                    yield event
            self._parser.close()  # raises when the closing boundary never came
        except ParserLimitReached as e:
            raise ClientException(f"The multipart body is not acceptable: {e}.") from None
        except MultipartError as e:
            raise ClientException(f"The multipart body is malformed: {_said(e)}.") from None


def _said(error: MultipartError) -> str:
    """What the parser's error says, in words (never the repr of the exception it wraps)."""
    causes = [error, *error.args]
    if any(isinstance(c, UnicodeDecodeError) for c in causes):
        return "a part's header is not UTF-8"
    words = [str(a) for a in error.args if isinstance(a, str)]
    return "; ".join(words) or "it cannot be read"


def _check_headers(segment: MultipartSegment) -> None:
    if not segment.name:
        raise ClientException("Every form part needs a name.")
    encoding = segment.header("Content-Transfer-Encoding")
    if encoding is not None and encoding.strip().lower() not in _TRANSFER_ENCODINGS:
        raise ClientException("Encoded form parts are not supported; send the raw bytes.")


def _text(value: bytearray, name: str) -> str:
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ClientException(f"The form field {name!r} is not UTF-8.") from None
