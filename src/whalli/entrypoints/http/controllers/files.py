"""Files: /api/files (upload, list, read, follow the status, download, delete).

``POST /api/files/upload`` takes ``multipart/form-data`` with the file in a part named ``file``
(with a filename). The target project is the ``projectId`` query parameter or a ``projectId``
form field placed BEFORE the file part (the body is streamed to storage as it arrives, so the
project must be known before the file's first byte); without either, the personal project.
Any other field, or a field given twice, is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.openapi.spec import OpenAPIFormat
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect

from whalli.adapters.prometheus.chat_metrics import sse_connections
from whalli.config import Settings
from whalli.domain.model.attachments import Attachment, AttachmentStatus
from whalli.domain.model.filenames import content_disposition
from whalli.domain.model.principal import Principal
from whalli.domain.services.files.delete_attachment import (
    DeleteAttachment,
    DeleteAttachmentHandler,
)
from whalli.domain.services.files.get_attachment import (
    AttachmentView,
    GetAttachment,
    GetAttachmentHandler,
)
from whalli.domain.services.files.list_attachments import (
    DEFAULT_LIMIT,
    ListAttachments,
    ListAttachmentsHandler,
)
from whalli.domain.services.files.open_attachment_content import (
    OpenAttachmentContent,
    OpenAttachmentContentHandler,
)
from whalli.domain.services.files.upload_attachment import (
    UploadAttachment,
    UploadAttachmentHandler,
)
from whalli.domain.services.files.watch_attachment import (
    Change,
    WatchAttachment,
    WatchAttachmentHandler,
    WatchEnd,
)
from whalli.entrypoints.http import sse
from whalli.entrypoints.http.lean_stream import LeanStream
from whalli.entrypoints.http.openapi_operations import (
    documented,
    multipart_form,
    redirect,
    text_field,
)
from whalli.entrypoints.http.schemas import Schema
from whalli.entrypoints.http.uploads import (
    UploadForm,
    boundary_of,
    check_declared_length,
    request_body,
)

PROJECT_FIELD = "projectId"
# The body the upload route parses itself, for the document (see openapi_operations.py).
_UPLOAD_FORM = multipart_form(
    "The file, streamed to storage as it arrives.",
    "The file, with a filename: the last part. Its type comes from its content.",
    {
        PROJECT_FIELD: text_field(
            "The project to put it in, before the file part (or the query parameter). "
            "Default: the personal project.",
            format=OpenAPIFormat.UUID,
        )
    },
)
_DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}


class File(Schema):
    id: UUID
    project_id: UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    status: AttachmentStatus
    created_at: datetime


class FilePage(Schema):
    items: list[File]
    next_cursor: str | None  # no default: always present, null on the last page


class FileDetail(File):
    failure_reason: str | None
    text_preview: str | None
    page_count: int | None
    truncated: bool


def _file(a: Attachment) -> File:
    return File(
        id=a.id, project_id=a.project_id, filename=a.filename, content_type=a.content_type,
        size_bytes=a.size_bytes, sha256=a.sha256, status=a.status, created_at=a.created_at,
    )  # fmt: skip


def _detail(view: AttachmentView) -> FileDetail:
    a = view.attachment
    return FileDetail(
        id=a.id, project_id=a.project_id, filename=a.filename, content_type=a.content_type,
        size_bytes=a.size_bytes, sha256=a.sha256, status=a.status, created_at=a.created_at,
        failure_reason=a.failure_reason, text_preview=view.text_preview,
        page_count=view.page_count, truncated=view.truncated,
    )  # fmt: skip


async def _status_events(
    file_id: UUID, changes: AsyncGenerator[Change, None]
) -> AsyncIterator[bytes]:
    """``status`` events (numbered), heartbeat comments, and ``deleted`` or ``timeout`` last."""
    gauge = sse_connections()
    gauge.inc()
    try:
        async with aclosing(changes):
            sent = 0
            async for change in changes:
                if change is None:
                    yield sse.encode_comment()
                elif isinstance(change, WatchEnd):
                    yield sse.json_event(change.value, {"id": str(file_id)})
                else:
                    sent += 1
                    yield sse.json_event("status", _detail(change), str(sent))
    finally:
        gauge.dec()


def _media_type(a: Attachment) -> str:
    """The download's Content-Type: the detected type, with a text file's charset when it has
    one, else none. Given as a header, so that Litestar does not add its own ``charset=utf-8``
    to every ``text/*`` type (a UTF-16 file labelled UTF-8 reads as garbage)."""
    return a.content_type if a.charset is None else f"{a.content_type}; charset={a.charset}"


def _project_id(query: UUID | None, fields: dict[str, str]) -> UUID | None:
    raw = fields.get(PROJECT_FIELD)
    if raw is None or raw == "":
        return query
    try:
        field = UUID(raw)
    except ValueError:
        raise ClientException(f"{PROJECT_FIELD} is not a valid id.") from None
    if query is not None and query != field:
        raise ClientException(f"The {PROJECT_FIELD} field and query parameter differ.")
    return field


class FileController(Controller):
    """A file is as visible as its project: members read and download, owners and editors
    upload and delete (viewers 403), anyone else gets 404 as for an id that does not exist."""

    path = "/api/files"
    tags = ["files"]

    @post(
        "/upload",
        summary="Upload a file (multipart/form-data, streamed; 413 over the size limit)",
        description="Parts: `file` (required, with a filename, last) and an optional "
        "`projectId` field before it; `projectId` may instead be a query parameter. The type "
        "comes from the content (415 for unsupported types); extraction runs in the background.",
        # Our own limit applies (the settings' max_upload_bytes, checked while streaming);
        # Litestar's default body limit would refuse large files regardless.
        request_max_body_size=None,
        operation_class=documented(body=_UPLOAD_FORM),
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        settings: NamedDependency[Settings],
        upload_attachment: NamedDependency[UploadAttachmentHandler],
        project_id: Annotated[
            UUID | None,
            QueryParameter(name=PROJECT_FIELD, description="Default: the personal project"),
        ] = None,
    ) -> File:
        boundary = boundary_of(request.headers.get("content-type"))
        limit = settings.max_upload_bytes
        check_declared_length(request.content_length, limit)
        form = UploadForm(request_body(request.receive), boundary, limit, accepted=(PROJECT_FIELD,))
        await form.open()
        # closed here whatever happens, even when the use case refuses before reading it all
        async with aclosing(form.file_chunks()) as chunks:
            command = UploadAttachment(
                user_id=principal.user_id, project_id=_project_id(project_id, form.fields),
                filename=form.filename, chunks=chunks,
            )  # fmt: skip
            return _file(await upload_attachment.execute(command))

    @get("/", summary="A project's files, newest first (cursor pagination)")
    async def index(
        self,
        principal: NamedDependency[Principal],
        list_attachments: NamedDependency[ListAttachmentsHandler],
        project_id: Annotated[
            UUID | None,
            QueryParameter(name=PROJECT_FIELD, description="Default: the personal project"),
        ] = None,
        limit: Annotated[int, QueryParameter(description="1 to 500")] = DEFAULT_LIMIT,
        cursor: Annotated[
            str | None, QueryParameter(description="nextCursor of the previous page")
        ] = None,
    ) -> FilePage:
        command = ListAttachments(
            user_id=principal.user_id, project_id=project_id, limit=limit, cursor=cursor
        )
        page = await list_attachments.execute(command)
        return FilePage(items=[_file(a) for a in page.items], next_cursor=page.next_cursor)

    @get("/{file_id:uuid}", summary="A file's metadata, extraction status and text preview")
    async def read(
        self,
        principal: NamedDependency[Principal],
        get_attachment: NamedDependency[GetAttachmentHandler],
        file_id: FromPath[UUID],
    ) -> FileDetail:
        view = await get_attachment.execute(
            GetAttachment(user_id=principal.user_id, attachment_id=file_id)
        )
        return _detail(view)

    @get(
        "/{file_id:uuid}/events",
        summary="A file's status as Server-Sent Events, until its extraction ends",
        description="`status` events carry the body of `GET /api/files/{id}`: one at once, then "
        "one per change; the stream ends after `done` or `failed`, or with a `deleted` event "
        "(the file is gone), an `unavailable` event (the database is down: connect again "
        "later) or a `timeout` event (its lifetime ended: connect again). "
        "Authenticate with the Authorization header (a fetch-based SSE client).",
    )
    async def events(
        self,
        principal: NamedDependency[Principal],
        watch_attachment: NamedDependency[WatchAttachmentHandler],
        file_id: FromPath[UUID],
    ) -> LeanStream:
        command = WatchAttachment(user_id=principal.user_id, attachment_id=file_id)
        changes = await watch_attachment.execute(command)  # 404 here, before the stream
        return LeanStream(
            _status_events(file_id, changes), media_type=sse.MEDIA_TYPE, headers=dict(sse.HEADERS)
        )

    @get(
        "/{file_id:uuid}/content",
        summary="Download a file (streamed), or ?redirect=true for a short-lived URL (302)",
        operation_class=documented(
            responses={302: redirect("With `redirect=true`: to a presigned URL of the file.")}
        ),
    )
    async def content(
        self,
        principal: NamedDependency[Principal],
        open_attachment_content: NamedDependency[OpenAttachmentContentHandler],
        file_id: FromPath[UUID],
        redirect: Annotated[
            bool, QueryParameter(description="302 to a presigned URL instead of the bytes")
        ] = False,
    ) -> Response[Any]:
        command = OpenAttachmentContent(
            user_id=principal.user_id, attachment_id=file_id, presigned=redirect
        )
        opened = await open_attachment_content.execute(command)
        if opened.url is not None:
            return Redirect(opened.url, status_code=302, headers={"Cache-Control": "no-store"})
        assert opened.chunks is not None  # no URL asked for: the bytes are there
        a = opened.attachment
        headers = {
            **_DOWNLOAD_HEADERS,
            "Content-Type": _media_type(a),
            "Content-Disposition": content_disposition(a.filename),
            "Content-Length": str(a.size_bytes),
        }
        return LeanStream(opened.chunks, media_type=a.content_type, headers=headers)

    @delete("/{file_id:uuid}", summary="Delete a file (owners and editors)")
    async def remove(
        self,
        principal: NamedDependency[Principal],
        delete_attachment: NamedDependency[DeleteAttachmentHandler],
        file_id: FromPath[UUID],
    ) -> None:
        await delete_attachment.execute(
            DeleteAttachment(user_id=principal.user_id, attachment_id=file_id)
        )
