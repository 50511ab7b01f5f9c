"""In-process ``BlobStorage``: objects in a dict, stored only once their stream completed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from whalli.domain.model.errors import BlobNotFound
from whalli.ports.blob_storage import BlobInfo, BlobStorage

DEFAULT_CONTENT_TYPE = "application/octet-stream"


class InMemoryBlobStorage(BlobStorage):
    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, str]] = {}

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str, *, part_size: int = 0
    ) -> BlobInfo:
        data = bytearray()
        async for chunk in chunks:  # an error here propagates before anything is stored
            data += chunk
        content_type = content_type or DEFAULT_CONTENT_TYPE
        self._objects[key] = (bytes(data), content_type)
        return BlobInfo(key=key, size=len(data), content_type=content_type)

    async def get(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        data, _ = self._find(key)
        return self._stream(data, chunk_size)

    @staticmethod
    async def _stream(data: bytes, chunk_size: int) -> AsyncIterator[bytes]:
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    async def stat(self, key: str) -> BlobInfo:
        data, content_type = self._find(key)
        return BlobInfo(key=key, size=len(data), content_type=content_type)

    async def delete(self, key: str) -> None:
        self._objects.pop(key, None)

    async def presigned_url(self, key: str, expires_seconds: int) -> str:
        # Not fetchable: there is no server behind the fake; the URL only names the object.
        return f"memory://blobs/{quote(key)}?expires={expires_seconds}"

    def _find(self, key: str) -> tuple[bytes, str]:
        try:
            return self._objects[key]
        except KeyError:
            raise BlobNotFound() from None  # (no key: error details reach response bodies)
