"""Uploads and file access through the real app, container, Postgres, Redis and S3."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.conftest import new_unique
from tests.integration.http.test_identity_end_to_end import World, _settings
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import Container, build_container
from whalli.domain.model.attachments import Attachment, AttachmentStatus
from whalli.domain.model.errors import BlobNotFound
from whalli.domain.model.filenames import content_disposition, sanitize_filename
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.entrypoints.http.asgi import build_app

BUCKET = f"files-{new_unique()}"  # one bucket for this module
BOUNDARY = "whalli-test-boundary-7f3a"
SMALL_LIMIT = 100_000
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 64
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
TEXT = b"Quarterly notes: revenue is up and costs are down.\n" * 10


def form(
    data: bytes, filename: str = "file.bin", *, fields: dict[str, str] | None = None,
    after: dict[str, str] | None = None, boundary: str = BOUNDARY,
) -> bytes:  # fmt: skip
    """A multipart/form-data body: ``fields`` before the file part, ``after`` behind it."""

    def field(name: str, value: str) -> bytes:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        return head.encode() + value.encode() + b"\r\n"

    quoted = filename.replace('"', "%22").encode()
    body = b"".join(field(k, v) for k, v in (fields or {}).items())
    body += (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="' + quoted + b'"\r\n'
        + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    )  # fmt: skip
    body += b"".join(field(k, v) for k, v in (after or {}).items())
    return body + f"--{boundary}--\r\n".encode()


def multipart(boundary: str = BOUNDARY) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class Files:
    def __init__(self, client: httpx.AsyncClient, container: Container) -> None:
        self.client, self.container = client, container
        self.world = World(client, container)  # type: ignore[arg-type]

    async def user(self, name: str) -> dict[str, Any]:
        user = await self.world.register(name)
        user["project"] = personal_project_id(uuid.UUID(user["user"]["id"]))
        return user

    async def upload(
        self, auth: dict[str, str], body: bytes | AsyncIterator[bytes], *, query: str = "",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        return await self.client.post(
            f"/api/files/upload{query}",
            content=body,
            headers={**auth, **multipart(), **(headers or {})},
        )

    async def rows(self, project_id: uuid.UUID) -> list[Attachment]:
        uow = await resolved(self.container.adapters.unit_of_work())
        async with uow:
            rows: list[Attachment] = await uow.attachments.list_for_project(project_id)
        return rows

    def objects(self, project_id: uuid.UUID) -> list[str]:
        minio = self.container.gateways.minio()
        found = minio.list_objects(BUCKET, prefix=f"{project_id}/", recursive=True)
        uploads = minio._list_multipart_uploads(BUCKET, prefix=f"{project_id}/").uploads
        return [o.object_name for o in found] + [u.object_name for u in uploads]


FilesFactory = Callable[..., Awaitable[Files]]


@pytest.fixture
async def files(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Files]:
    async with _files(stack_urls, unique) as found:
        yield found


@pytest.fixture
async def small_files(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Files]:
    async with _files(stack_urls, unique, WHALLI_MAX_UPLOAD_BYTES=str(SMALL_LIMIT)) as found:
        yield found


@asynccontextmanager
async def _files(urls: StackUrls, unique: str, **overrides: str) -> AsyncIterator[Files]:
    settings = _settings(urls, unique, WHALLI_S3_BUCKET=BUCKET, **overrides)
    container = build_container(settings)
    async with live_server(build_app(settings, container)) as client:
        yield Files(client, container)


@pytest.mark.parametrize(
    ("data", "name", "mime"),
    [(PNG, "shot.png", "image/png"), (PDF, "paper.pdf", "application/pdf"),
     (TEXT, "notes.txt", "text/plain")],
)  # fmt: skip
async def test_an_upload_is_typed_by_its_bytes_stored_in_s3_and_recorded_pending(
    files: Files, data: bytes, name: str, mime: str
) -> None:
    alice = await files.user("alice")
    response = await files.upload(alice["auth"], form(data, name))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["contentType"] == mime
    assert body["filename"] == name
    assert body["projectId"] == str(alice["project"])
    assert body["sizeBytes"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["status"] == "pending"
    rows = await files.rows(alice["project"])
    assert [(str(r.id), r.status, r.content_type) for r in rows] == [
        (body["id"], AttachmentStatus.PENDING, mime)
    ]
    blob = await files.container.adapters.blob_storage().stat(rows[0].object_key)
    assert rows[0].object_key == f"{alice['project']}/{body['id']}"
    assert (blob.size, blob.content_type) == (len(data), mime)


async def test_html_named_pdf_is_refused_naming_what_it_is(files: Files) -> None:
    alice = await files.user("alice")
    html = b"<!DOCTYPE html>\n<html><body><script>alert(1)</script></body></html>\n"
    response = await files.upload(alice["auth"], form(html, "report.pdf"))
    assert response.status_code == 415
    assert response.json()["mime"] == "text/html"
    assert "text/html" in response.json()["detail"]
    assert await files.rows(alice["project"]) == []
    assert files.objects(alice["project"]) == []


async def test_an_empty_file_is_refused(files: Files) -> None:
    alice = await files.user("alice")
    response = await files.upload(alice["auth"], form(b"", "empty.txt"))
    assert 400 <= response.status_code < 500
    assert await files.rows(alice["project"]) == []


async def test_a_streamed_upload_over_the_limit_is_413_and_leaves_nothing(
    small_files: Files,
) -> None:
    alice = await small_files.user("alice")
    body = form(PNG + b"\0" * (1024 * 1024), "big.png")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies as read
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await small_files.upload(alice["auth"], chunked())
    assert response.status_code == 413
    assert response.json()["code"] == "attachment_too_large"
    assert await small_files.rows(alice["project"]) == []
    assert small_files.objects(alice["project"]) == []


async def test_crossing_the_limit_after_parts_were_sent_to_s3_aborts_them(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    limit = 6 * 1024 * 1024  # above S3's 5 MB part size: one part is uploaded, then aborted
    async with _files(stack_urls, unique, WHALLI_MAX_UPLOAD_BYTES=str(limit)) as files:
        alice = await files.user("alice")
        body = form(PNG + b"\0" * (8 * 1024 * 1024), "big.png")

        async def chunked() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 256 * 1024):
                yield body[start : start + 256 * 1024]

        response = await files.upload(alice["auth"], chunked())
        assert response.status_code == 413
        assert await files.rows(alice["project"]) == []
        assert files.objects(alice["project"]) == []


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    small_files: Files,
) -> None:
    alice = await small_files.user("alice")
    response = await small_files.upload(alice["auth"], form(b"\0" * (SMALL_LIMIT * 2), "x.png"))
    assert response.status_code == 413
    assert await small_files.rows(alice["project"]) == []
    assert small_files.objects(alice["project"]) == []


async def test_a_file_under_the_limit_still_passes_with_a_small_limit(small_files: Files) -> None:
    alice = await small_files.user("alice")
    response = await small_files.upload(alice["auth"], form(PNG, "ok.png"))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "résumé 2024 ✓.txt", 'quote"d\\name.txt', "\u202egnp.exe"]
)
async def test_file_names_are_stored_sanitized_and_downloaded_with_rfc_6266(
    files: Files, name: str
) -> None:
    alice = await files.user("alice")
    response = await files.upload(alice["auth"], form(TEXT, name))
    assert response.status_code == 201, response.text
    stored = response.json()["filename"]
    assert "/" not in stored
    assert "\\" not in stored
    assert stored == sanitize_filename(name)
    download = await files.client.get(
        f"/api/files/{response.json()['id']}/content", headers=alice["auth"]
    )
    assert download.status_code == 200
    assert download.headers["content-disposition"] == content_disposition(stored)
    assert download.headers["content-disposition"].startswith("attachment; filename=")


async def test_a_download_streams_the_same_bytes_with_nosniff_and_the_detected_type(
    files: Files,
) -> None:
    alice = await files.user("alice")
    data = PNG * 700  # over Litestar's default body limit (10 MB) and S3's 5 MB part size
    uploaded = (await files.upload(alice["auth"], form(data, "big.png"))).json()
    async with files.client.stream(
        "GET", f"/api/files/{uploaded['id']}/content", headers=alice["auth"]
    ) as response:
        digest = hashlib.sha256()
        async for chunk in response.aiter_bytes():
            digest.update(chunk)
    assert response.status_code == 200
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest() == uploaded["sha256"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"] == "image/png"
    redirect = await files.client.get(
        f"/api/files/{uploaded['id']}/content?redirect=true", headers=alice["auth"]
    )
    assert redirect.status_code == 302
    async with httpx.AsyncClient() as s3:
        direct = await s3.get(redirect.headers["location"])
    assert direct.status_code == 200
    assert hashlib.sha256(direct.content).hexdigest() == uploaded["sha256"]


async def test_metadata_list_and_delete_for_the_owner(files: Files) -> None:
    alice = await files.user("alice")
    uploaded = (await files.upload(alice["auth"], form(TEXT, "notes.txt"))).json()
    detail = await files.client.get(f"/api/files/{uploaded['id']}", headers=alice["auth"])
    assert detail.status_code == 200
    assert detail.json()["status"] == "pending"
    assert detail.json()["textPreview"] is None
    assert detail.json()["failureReason"] is None
    listed = await files.client.get("/api/files", headers=alice["auth"])
    assert [f["id"] for f in listed.json()["items"]] == [uploaded["id"]]
    key = f"{alice['project']}/{uploaded['id']}"
    deleted = await files.client.delete(f"/api/files/{uploaded['id']}", headers=alice["auth"])
    assert deleted.status_code == 204
    assert await files.rows(alice["project"]) == []
    with pytest.raises(BlobNotFound, match="not found"):
        await files.container.adapters.blob_storage().stat(key)
    gone = await files.client.get(f"/api/files/{uploaded['id']}", headers=alice["auth"])
    assert gone.status_code == 404


async def test_another_user_sees_a_file_exactly_like_a_missing_one(files: Files) -> None:
    alice, bob = await files.user("alice"), await files.user("bob")
    uploaded = (await files.upload(alice["auth"], form(TEXT, "secret.txt"))).json()
    missing = str(uuid.uuid4())
    for file_id in (uploaded["id"], missing):
        for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
            response = await files.client.request(
                method, f"/api/files/{file_id}{path}", headers=bob["auth"]
            )
            assert response.status_code == 404, (method, path)
            assert response.json()["code"] == "attachment_not_found"
    assert (await files.client.get("/api/files", headers=bob["auth"])).json()["items"] == []
    other = await files.client.get(f"/api/files?projectId={alice['project']}", headers=bob["auth"])
    assert other.status_code == 404
    upload_there = await files.upload(
        bob["auth"], form(TEXT, "x.txt"), query=f"?projectId={alice['project']}"
    )
    assert upload_there.status_code == 404
    assert [str(r.id) for r in await files.rows(alice["project"])] == [uploaded["id"]]


async def test_the_project_comes_from_a_field_before_the_file_or_the_query(files: Files) -> None:
    alice = await files.user("alice")
    created = await files.client.post(
        "/api/projects", json={"name": "Research"}, headers=alice["auth"]
    )
    project = created.json()["id"]
    by_field = await files.upload(alice["auth"], form(TEXT, "a.txt", fields={"projectId": project}))
    by_query = await files.upload(alice["auth"], form(TEXT, "b.txt"), query=f"?projectId={project}")
    assert by_field.json()["projectId"] == by_query.json()["projectId"] == project
    late = await files.upload(alice["auth"], form(TEXT, "c.txt", after={"projectId": project}))
    assert late.status_code == 400
    assert "before" in late.json()["detail"]
    assert len(await files.rows(uuid.UUID(project))) == 2
    assert len(files.objects(uuid.UUID(project))) == 2
    assert files.objects(alice["project"]) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=" + "b" * 71, form(TEXT, "a.txt", boundary="b" * 71)),
        ("multipart/form-data; boundary=bad{boundary}", form(TEXT, "a.txt", boundary="bad{b}")),
        ("multipart/form-data", form(TEXT, "a.txt")),
        ("application/json", b"{}"),
        (multipart()["Content-Type"], form(TEXT, "a.txt")[:-20]),  # no closing boundary
        (multipart()["Content-Type"], f"--{BOUNDARY}\r\nX-Evil\r\n\r\nhi\r\n".encode()),
        (multipart()["Content-Type"], form(TEXT, "a.txt").replace(b'; filename="a.txt"', b"")),
    ],
)
async def test_malformed_multipart_is_a_400_problem_and_stores_nothing(
    files: Files, content_type: str, body: bytes
) -> None:
    alice = await files.user("alice")
    response = await files.upload(alice["auth"], body, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await files.rows(alice["project"]) == []
    assert files.objects(alice["project"]) == []


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for something the server does on its own (no timing assumed: only a hang fails)."""
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the server never got there")


async def test_a_client_leaving_mid_upload_is_an_aborted_upload_not_a_server_error(
    files: Files,
) -> None:
    alice = await files.user("alice")
    body = form(PNG + b"\0" * (8 * 1024 * 1024), "big.png")
    sent = body[: 6 * 1024 * 1024]  # past S3's 5 MB part size: a part is stored, then dropped
    head = (
        "POST /api/files/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {alice['auth']['Authorization']}\r\n"
        f"Content-Type: {multipart()['Content-Type']}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    url = files.client.base_url

    with capture_logs() as logs:
        _, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(head.encode() + sent)
        await writer.drain()
        await _until(lambda: bool(files.objects(alice["project"])))  # a part went to S3
        writer.close()
        await writer.wait_closed()
        await _until(lambda: any(e["event"] == "request" for e in logs))

    (access,) = [e for e in logs if e["event"] == "request"]
    assert access["route"] == "/api/files/upload"
    assert access["status"] < 500
    assert [e["log_level"] for e in logs if e["log_level"] in ("error", "critical")] == []
    (aborted,) = [e for e in logs if e["event"] == "upload_aborted"]
    assert aborted["log_level"] == "info"
    assert await files.rows(alice["project"]) == []
    assert files.objects(alice["project"]) == []
