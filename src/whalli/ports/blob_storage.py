"""Object storage for uploaded files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from whalli.domain.model.base import Value


class BlobInfo(Value, frozen=True, kw_only=True):
    key: str
    size: int
    content_type: str


class BlobStorage(Protocol):
    async def put(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str, *, part_size: int = 0
    ) -> BlobInfo:
        """Store the bytes yielded by ``chunks`` under ``key`` without holding them all in memory.

        If ``chunks`` raises, nothing is left behind under ``key`` and the error propagates.
        Raises ``ServiceUnavailable`` when the store cannot be reached.
        """
        ...

    async def get(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream the object. Raises ``BlobNotFound`` before yielding when it does not exist."""
        ...

    async def stat(self, key: str) -> BlobInfo:
        """Raises ``BlobNotFound``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; missing objects are fine."""
        ...

    async def presigned_url(self, key: str, expires_seconds: int) -> str:
        """A short-lived GET URL for the object."""
        ...
