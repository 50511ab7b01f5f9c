"""``BlobStorage`` on an S3 bucket through the (synchronous) MinIO SDK, run in threads."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from datetime import timedelta
from typing import Any, TypeVar

from minio import Minio
from minio.datatypes import Part
from minio.error import S3Error

from whalli.adapters.s3.errors import translated
from whalli.ports.blob_storage import BlobInfo, BlobStorage

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_BUCKET_EXISTS = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})

T = TypeVar("T")


class S3BlobStorage(BlobStorage):
    """``signer``: the client whose address presigned URLs name (the store as browsers reach
    it, ``WHALLI_S3_PUBLIC_URL``); a URL signed for one host is refused at another, so a
    private address (``http://minio:9000`` in the compose files) cannot simply be rewritten.
    Default: ``client``."""

    def __init__(self, client: Minio, bucket: str, *, signer: Minio | None = None) -> None:
        self._client = client
        self._signer = signer or client
        self.bucket = bucket

    async def _call(self, fn: Callable[..., T], *args: Any, key: str | None = None) -> T:
        with translated(key):
            return await asyncio.to_thread(fn, *args)

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (safe to call from several processes at once)."""
        await self._call(self._ensure_bucket)

    def _ensure_bucket(self) -> None:
        if self._client.bucket_exists(self.bucket):
            return
        try:
            self._client.make_bucket(self.bucket)
        except S3Error as e:
            if e.code not in _BUCKET_EXISTS:  # else another process created it just now
                raise

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str, *, part_size: int = 0
    ) -> BlobInfo:
        part_size = max(part_size, MIN_PART_SIZE)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[Part] = []
        try:
            async for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                # Keep at least one byte back: the last part is sent after the stream ends, and
                # an object no larger than one part never becomes a multipart upload.
                while len(buffer) > part_size:
                    if upload_id is None:
                        upload_id = await self._call(
                            self._client._create_multipart_upload,
                            self.bucket,
                            key,
                            {"Content-Type": content_type},
                        )
                    parts.append(
                        await self._upload_part(
                            key, upload_id, len(parts) + 1, bytes(buffer[:part_size])
                        )
                    )
                    del buffer[:part_size]
            if upload_id is None:
                await self._call(
                    self._client.put_object,
                    self.bucket,
                    key,
                    io.BytesIO(buffer),
                    len(buffer),
                    content_type,
                )
            else:
                parts.append(await self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer)))
                await self._call(
                    self._client._complete_multipart_upload, self.bucket, key, upload_id, parts
                )
        except BaseException:
            # The chunks failed, the store failed or the task was cancelled: drop the uploaded
            # parts so that nothing is left under ``key``; the original error is what matters.
            if upload_id is not None:
                with suppress(Exception):
                    await asyncio.to_thread(
                        self._client._abort_multipart_upload, self.bucket, key, upload_id
                    )
            raise
        return BlobInfo(key=key, size=size, content_type=content_type)

    async def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> Part:
        etag = await self._call(
            self._client._upload_part, self.bucket, key, data, None, upload_id, number
        )
        return Part(number, etag)

    async def get(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        response = await self._call(self._client.get_object, self.bucket, key, key=key)
        return self._stream(response, chunk_size)

    async def _stream(self, response: Any, chunk_size: int) -> AsyncIterator[bytes]:
        # The response holds a pooled connection until closed: the finally below runs when the
        # consumer finishes, breaks out (aclose) or the generator is garbage-collected.
        try:
            while True:
                chunk: bytes = await self._call(response.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            response.close()
            response.release_conn()

    async def stat(self, key: str) -> BlobInfo:
        obj = await self._call(self._client.stat_object, self.bucket, key, key=key)
        return BlobInfo(
            key=key, size=obj.size or 0, content_type=obj.content_type or DEFAULT_CONTENT_TYPE
        )

    async def delete(self, key: str) -> None:
        # S3 answers the delete of a missing object with success: nothing to special-case.
        await self._call(self._client.remove_object, self.bucket, key)

    async def presigned_url(self, key: str, expires_seconds: int) -> str:
        # Signing is local computation (the region is fixed in create_minio): no request is made.
        with translated():
            return self._signer.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=expires_seconds)
            )
