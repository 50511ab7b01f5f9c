from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from minio import Minio

from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.s3.blob_storage import MIN_PART_SIZE, S3BlobStorage
from whalli.adapters.s3.client import create_minio
from whalli.domain.model.errors import BlobNotFound, ServiceUnavailable
from whalli.ports.blob_storage import BlobInfo, BlobStorage

from .conftest import CONTRACT_BUCKET


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def failing_after(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    async for chunk in chunks_of(data, size):
        yield chunk
    raise RuntimeError("the upload stream broke")


async def read_all(storage: BlobStorage, key: str, chunk_size: int = 1 << 20) -> bytes:
    return b"".join([chunk async for chunk in await storage.get(key, chunk_size)])


async def test_a_small_object_round_trips(blob_storage: BlobStorage, unique: str) -> None:
    key = f"contracts/{unique}/small.txt"

    info = await blob_storage.put(key, chunks_of(b"hello, whalli", 4), "text/plain")

    assert info == BlobInfo(key=key, size=13, content_type="text/plain")
    assert await blob_storage.stat(key) == info
    assert await read_all(blob_storage, key) == b"hello, whalli"


async def test_an_empty_object_round_trips(blob_storage: BlobStorage, unique: str) -> None:
    key = f"contracts/{unique}/empty"

    info = await blob_storage.put(key, chunks_of(b""), "application/octet-stream")

    assert info.size == 0
    assert (await blob_storage.stat(key)).size == 0
    assert await read_all(blob_storage, key) == b""


async def test_an_object_of_several_parts_is_streamed_in_and_out(
    blob_storage: BlobStorage, unique: str
) -> None:
    key = f"contracts/{unique}/large.bin"
    data = os.urandom(2 * MIN_PART_SIZE + 123_457)

    info = await blob_storage.put(key, chunks_of(data), "application/pdf")

    assert info == BlobInfo(key=key, size=len(data), content_type="application/pdf")
    assert await blob_storage.stat(key) == info
    chunks = [chunk async for chunk in await blob_storage.get(key, chunk_size=1 << 20)]
    assert max(len(c) for c in chunks) <= 1 << 20
    assert hashlib.sha256(b"".join(chunks)).digest() == hashlib.sha256(data).digest()


async def test_an_object_of_exactly_one_part_round_trips(
    blob_storage: BlobStorage, unique: str
) -> None:
    key = f"contracts/{unique}/one-part.bin"
    data = os.urandom(MIN_PART_SIZE)

    await blob_storage.put(key, chunks_of(data, 1 << 20), "application/octet-stream")

    assert await read_all(blob_storage, key) == data


@pytest.mark.parametrize("size", [1000, 2 * MIN_PART_SIZE + 10], ids=["small", "multipart"])
async def test_a_failing_stream_leaves_nothing_behind(
    blob_storage: BlobStorage, unique: str, size: int
) -> None:
    key = f"contracts/{unique}/broken"

    with pytest.raises(RuntimeError, match="the upload stream broke"):
        await blob_storage.put(key, failing_after(os.urandom(size)), "text/plain")

    with pytest.raises(BlobNotFound, match="Stored object not found"):
        await blob_storage.stat(key)


async def test_reading_a_missing_object_raises_before_any_chunk(
    blob_storage: BlobStorage, unique: str
) -> None:
    with pytest.raises(BlobNotFound, match="Stored object not found"):
        await blob_storage.get(f"contracts/{unique}/missing")


async def test_stat_of_a_missing_object_raises(blob_storage: BlobStorage, unique: str) -> None:
    with pytest.raises(BlobNotFound, match="Stored object not found"):
        await blob_storage.stat(f"contracts/{unique}/missing")


async def test_putting_again_replaces_the_object(blob_storage: BlobStorage, unique: str) -> None:
    key = f"contracts/{unique}/replaced"
    await blob_storage.put(key, chunks_of(b"first version"), "text/plain")
    await blob_storage.put(key, chunks_of(b"second"), "text/markdown")

    assert await blob_storage.stat(key) == BlobInfo(key=key, size=6, content_type="text/markdown")
    assert await read_all(blob_storage, key) == b"second"


async def test_delete_removes_the_object_and_is_idempotent(
    blob_storage: BlobStorage, unique: str
) -> None:
    key = f"contracts/{unique}/deleted"
    await blob_storage.put(key, chunks_of(b"bye"), "text/plain")

    await blob_storage.delete(key)
    await blob_storage.delete(key)

    with pytest.raises(BlobNotFound, match="Stored object not found"):
        await blob_storage.stat(key)


async def test_a_presigned_url_names_the_object(blob_storage: BlobStorage, unique: str) -> None:
    key = f"contracts/{unique}/shared.txt"
    await blob_storage.put(key, chunks_of(b"shared"), "text/plain")

    url = await blob_storage.presigned_url(key, expires_seconds=60)

    assert f"{unique}/shared.txt" in url


# --- S3 only ----------------------------------------------------------------------------------


async def test_an_s3_presigned_url_can_be_fetched_without_credentials(
    s3_storage: S3BlobStorage, unique: str
) -> None:
    key = f"contracts/{unique}/shared.txt"
    await s3_storage.put(key, chunks_of(b"shared bytes"), "text/plain")

    url = await s3_storage.presigned_url(key, expires_seconds=60)
    async with httpx.AsyncClient() as http:
        response = await http.get(url)

    assert response.status_code == 200
    assert response.content == b"shared bytes"


async def test_a_presigned_url_is_signed_for_the_public_address_browsers_use(
    minio_client: Minio, stack_urls: StackUrls, unique: str
) -> None:
    """The API reaches the store at one address, browsers at another (``S3_PUBLIC_URL``):
    the URL names the public one and is valid there; one signed for the API's address is
    refused at the public one (the host is signed), so it could not be rewritten instead."""
    private = urlsplit(
        stack_urls.s3_endpoint
        if "://" in stack_urls.s3_endpoint
        else f"http://{stack_urls.s3_endpoint}"
    )
    assert private.hostname == "127.0.0.1"
    public_url = f"http://localhost:{private.port}"
    signer = create_minio(public_url, stack_urls.s3_access_key, stack_urls.s3_secret_key)
    storage = S3BlobStorage(minio_client, CONTRACT_BUCKET, signer=signer)
    key = f"contracts/{unique}/public.txt"
    await storage.put(key, chunks_of(b"for the browser"), "text/plain")

    url = await storage.presigned_url(key, expires_seconds=60)
    private_url = await S3BlobStorage(minio_client, CONTRACT_BUCKET).presigned_url(key, 60)
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
        rewritten = await http.get(private_url.replace("127.0.0.1", "localhost", 1))

    assert url.startswith(f"{public_url}/{CONTRACT_BUCKET}/")
    assert (fetched.status_code, fetched.content) == (200, b"for the browser")
    assert rewritten.status_code == 403


async def test_a_large_s3_object_is_stored_as_a_multipart_upload(
    s3_storage: S3BlobStorage, minio_client: Minio, unique: str
) -> None:
    key = f"contracts/{unique}/parts.bin"
    await s3_storage.put(key, chunks_of(os.urandom(2 * MIN_PART_SIZE + 1)), "text/plain")

    # An S3 multipart object's ETag ends in "-<number of parts>".
    etag = minio_client.stat_object(CONTRACT_BUCKET, key).etag
    assert etag is not None
    assert etag.endswith("-3")


async def test_a_failed_multipart_s3_upload_is_aborted(
    s3_storage: S3BlobStorage, minio_client: Minio, unique: str
) -> None:
    key = f"contracts/{unique}/aborted.bin"

    with pytest.raises(RuntimeError, match="the upload stream broke"):
        await s3_storage.put(key, failing_after(os.urandom(MIN_PART_SIZE + 1)), "text/plain")

    pending = minio_client._list_multipart_uploads(CONTRACT_BUCKET, prefix=key)
    assert [upload.object_name for upload in pending.uploads] == []


async def test_ensure_bucket_is_idempotent(minio_client: Minio, unique: str) -> None:
    storage = S3BlobStorage(minio_client, f"whalli-ensure-{unique}")

    await storage.ensure_bucket()
    await storage.ensure_bucket()

    assert minio_client.bucket_exists(f"whalli-ensure-{unique}")
    minio_client.remove_bucket(f"whalli-ensure-{unique}")


async def test_an_unreachable_s3_raises_service_unavailable_without_the_secret(
    closed_port: int,
) -> None:
    client = create_minio(f"http://127.0.0.1:{closed_port}", "whalli", "blob-s3cret-key")
    storage = S3BlobStorage(client, CONTRACT_BUCKET)

    with pytest.raises(ServiceUnavailable, match=r"^s3: connection failed$") as caught:
        await storage.stat("anything")

    assert "blob-s3cret-key" not in str(caught.value)


async def test_a_wrong_s3_secret_is_reported_without_echoing_it(stack_urls: StackUrls) -> None:
    client = create_minio(stack_urls.s3_endpoint, stack_urls.s3_access_key, "wrong-s3cret-key")
    storage = S3BlobStorage(client, CONTRACT_BUCKET)

    with pytest.raises(ServiceUnavailable, match=r"^s3: request refused") as caught:
        await storage.stat("anything")

    assert "wrong-s3cret-key" not in str(caught.value)
