"""An OpenAI ``/v1/audio`` multipart form, read with bounded memory: the ``file`` part is
written to a temporary file as it arrives, the small fields around it (before or after it, in
any order, as OpenAI's SDKs and curl send them) are collected. Only the fields the route takes
are accepted, each at most once: any other is ``InvalidInput`` naming it (OpenAI's ``param``).
Framing errors are 400s; a file over the limit is ``AttachmentTooLarge`` (413) at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import BinaryIO

from litestar.exceptions import ClientException
from multipart import (  # type: ignore[import-untyped]
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
)

from whalli.domain.model.errors import AttachmentTooLarge, InvalidInput
from whalli.entrypoints.http.uploads import (
    FILE_FIELD,
    FRAMING_ALLOWANCE,
    MAX_FIELD_BYTES,
    MAX_PARTS,
)


def too_large(max_file_bytes: int) -> AttachmentTooLarge:
    return AttachmentTooLarge(
        f"The audio file is larger than the limit of {max_file_bytes} bytes.",
        limit_bytes=max_file_bytes,
        field=FILE_FIELD,
    )


async def spool_form(
    body: AsyncIterator[bytes], boundary: str, max_file_bytes: int, path: Path,
    accepted: Collection[str],
) -> dict[str, str]:  # fmt: skip
    """Write the form's ``file`` part to ``path`` and return its other fields."""
    parser = PushMultipartParser(boundary, max_segment_count=MAX_PARTS, strict=True)
    received = 0
    with path.open("wb") as file:
        reader = _Reader(file, max_file_bytes, frozenset(accepted))
        try:
            async for chunk in body:
                received += len(chunk)
                if received > max_file_bytes + FRAMING_ALLOWANCE:
                    raise too_large(max_file_bytes)
                for event in parser.parse(chunk):
                    await reader.feed(event)
            parser.close()  # raises when the closing boundary never came
        except ParserLimitReached as e:
            raise ClientException(f"The multipart body is not acceptable: {e}.") from None
        except MultipartError:
            raise ClientException("The multipart body is malformed.") from None
    if not reader.had_file:
        raise InvalidInput(f"The form has no {FILE_FIELD!r} part.", field=FILE_FIELD)
    return reader.fields


class _Reader:
    def __init__(self, file: BinaryIO, max_file_bytes: int, accepted: frozenset[str]) -> None:
        self.file, self.max_file_bytes, self.accepted = file, max_file_bytes, accepted
        self.fields: dict[str, str] = {}
        self.had_file = False
        self._name: str | None = None  # the part being read
        self._value = bytearray()
        self._size = 0

    async def feed(self, event: MultipartSegment | bytes | None) -> None:
        if isinstance(event, MultipartSegment):
            self._open(event)
        elif event is None:
            if self._name is not None and self._name != FILE_FIELD:
                try:
                    self.fields[self._name] = self._value.decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise InvalidInput(f"{self._name} is not UTF-8.", field=self._name) from None
            self._name = None
        elif self._name == FILE_FIELD:
            self._size += len(event)
            if self._size > self.max_file_bytes:
                raise too_large(self.max_file_bytes)
            await asyncio.to_thread(self.file.write, event)
        else:
            self._value += event
            if len(self._value) > MAX_FIELD_BYTES:
                raise InvalidInput(f"{self._name} is too long.", field=self._name)

    def _open(self, segment: MultipartSegment) -> None:
        name = segment.name
        if not name:
            raise ClientException("Every form part needs a name.")
        encoding = segment.header("Content-Transfer-Encoding")
        if encoding is not None and encoding.strip().lower() not in ("7bit", "8bit", "binary"):
            raise ClientException("Encoded form parts are not supported; send the raw bytes.")
        if name == FILE_FIELD:
            if self.had_file:
                raise InvalidInput("Send one file.", field=FILE_FIELD)
            self.had_file = True
        elif name not in self.accepted:
            known = ", ".join(sorted(self.accepted))
            raise InvalidInput(
                f"Unrecognized request argument supplied: {name} (this server takes file, "
                f"{known}).",
                field=name,
            )
        elif name in self.fields:
            raise InvalidInput(f"{name} is given more than once.", field=name)
        self._name, self._value = name, bytearray()
