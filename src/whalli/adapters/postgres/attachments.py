"""Attachment records in Postgres (the extraction result is a jsonb document)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import PostgresRepository, Row, check_limit, columns
from whalli.domain.model.attachments import Attachment, AttachmentStatus, ExtractionExcerpt
from whalli.domain.model.errors import AttachmentNotFound
from whalli.ports.attachments import AttachmentRepository

_COLUMNS = (
    "id",
    "project_id",
    "user_id",
    "object_key",
    "filename",
    "content_type",
    "charset",
    "size_bytes",
    "sha256",
    "status",
    "extraction",
    "failure_reason",
    "created_at",
    "updated_at",
    "requeued_at",
)


def _value(column: str) -> str:
    return "%(extraction)s::jsonb" if column == "extraction" else f"%({column})s"


_SELECT = f"SELECT {columns(_COLUMNS)} FROM attachments"
_INSERT = (
    f"INSERT INTO attachments ({columns(_COLUMNS)}) "
    f"VALUES ({', '.join(_value(c) for c in _COLUMNS)})"
)
_UPDATE = (
    f"UPDATE attachments SET {', '.join(f'{c} = {_value(c)}' for c in _COLUMNS[1:])} "
    "WHERE id = %(id)s"
)

# Claim in one statement: the stale rows are locked (rows a worker or another sweeper holds are
# skipped), stamped and returned, least recently touched first. GREATEST ignores a null.
_TOUCHED = "GREATEST(updated_at, requeued_at)"
_CLAIM_STALE = (
    f"WITH stale AS (SELECT id, {_TOUCHED} AS touched FROM attachments "
    f"WHERE status = %(status)s AND {_TOUCHED} < %(before)s "
    f"ORDER BY {_TOUCHED}, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
    "claimed AS (UPDATE attachments a SET requeued_at = %(now)s FROM stale "
    f"WHERE a.id = stale.id RETURNING {', '.join(f'a.{c}' for c in _COLUMNS)}, stale.touched) "
    f"SELECT {columns(_COLUMNS)} FROM claimed ORDER BY touched, id"
)


# What a prompt reads of its files (``get_many_excerpts``): the first characters of each text,
# cut here, so the rest (up to a million characters a file) never leaves the server. The text is
# taken out of the document once (OFFSET 0 keeps the subquery from being inlined into each use).
_WHITESPACE = (  # what Python's str.isspace() takes for whitespace, all of it
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_VISIBLE = f"[^{_WHITESPACE}]"  # a character that is not whitespace (blank: ``str.strip()``)
_SELECT_EXCERPTS = (
    f"SELECT {', '.join(f'a.{c}' for c in _COLUMNS if c != 'extraction')}, "
    "a.extraction - 'text' AS extraction, left(x.text, %(max_chars)s) AS excerpt, "
    "length(x.text) AS length, x.text !~ %(visible)s AS blank "
    "FROM attachments a CROSS JOIN LATERAL (SELECT a.extraction ->> 'text' AS text OFFSET 0) x "
    "WHERE a.id = ANY(%(ids)s)"
)


def _params(attachment: Attachment) -> dict[str, Any]:
    attachment.check_storable()
    params = msgspec.structs.asdict(attachment)
    extraction = attachment.extraction
    params["extraction"] = None if extraction is None else msgspec.json.encode(extraction).decode()
    return params


def _attachment(row: Row) -> Attachment:
    return msgspec.convert(row, Attachment)


def _excerpted(row: Row) -> Attachment:
    excerpt, length, blank = row.pop("excerpt"), row.pop("length"), row.pop("blank")
    extraction = row.pop("extraction")
    attachment = msgspec.convert(row, Attachment)
    if extraction is not None:
        extraction.update(text=excerpt, length=length, blank=blank)
        attachment.extraction = msgspec.convert(extraction, ExtractionExcerpt)
    return attachment


class PostgresAttachmentRepository(PostgresRepository, AttachmentRepository):
    async def add(self, attachment: Attachment) -> None:
        await self._run(_INSERT, _params(attachment))

    async def get(self, attachment_id: UUID) -> Attachment:
        return await self._get(f"{_SELECT} WHERE id = %(id)s", attachment_id)

    async def get_many(self, attachment_ids: Collection[UUID]) -> dict[UUID, Attachment]:
        if not attachment_ids:
            return {}
        rows = await self._all(f"{_SELECT} WHERE id = ANY(%(ids)s)", {"ids": list(attachment_ids)})
        return {a.id: a for a in map(_attachment, rows)}

    async def get_many_excerpts(
        self, attachment_ids: Collection[UUID], max_chars: int
    ) -> dict[UUID, Attachment]:
        if not attachment_ids:
            return {}
        params = {"ids": list(attachment_ids), "max_chars": max(max_chars, 0), "visible": _VISIBLE}
        rows = await self._all(_SELECT_EXCERPTS, params)
        return {a.id: a for a in map(_excerpted, rows)}

    async def get_for_update(self, attachment_id: UUID) -> Attachment:
        return await self._get(f"{_SELECT} WHERE id = %(id)s FOR UPDATE", attachment_id)

    async def _get(self, query: str, attachment_id: UUID) -> Attachment:
        row = await self._one(query, {"id": attachment_id})
        if row is None:
            raise AttachmentNotFound()
        return _attachment(row)

    async def update(self, attachment: Attachment) -> None:
        if await self._run(_UPDATE, _params(attachment)) == 0:
            raise AttachmentNotFound()

    async def delete(self, attachment_id: UUID) -> None:
        if await self._run("DELETE FROM attachments WHERE id = %(id)s", {"id": attachment_id}) == 0:
            raise AttachmentNotFound()

    async def list_for_project(
        self, project_id: UUID, *, limit: int = 100, before: tuple[datetime, UUID] | None = None
    ) -> list[Attachment]:
        check_limit(limit)
        params: dict[str, Any] = {"project_id": project_id, "limit": limit}
        after = ""
        if before is not None:
            params["at"], params["id"] = before
            after = "AND (created_at, id) < (%(at)s, %(id)s) "
        rows = await self._all(
            f"{_SELECT} WHERE project_id = %(project_id)s {after}"
            "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
            params,
        )
        return [_attachment(r) for r in rows]

    async def object_keys_for_project(self, project_id: UUID) -> list[str]:
        rows = await self._all(
            "SELECT object_key FROM attachments WHERE project_id = %(project_id)s",
            {"project_id": project_id},
        )
        return [str(r["object_key"]) for r in rows]

    async def object_keys_for_user(self, user_id: UUID) -> list[str]:
        rows = await self._all(
            "SELECT object_key FROM attachments WHERE user_id = %(user_id)s",
            {"user_id": user_id},
        )
        return [str(r["object_key"]) for r in rows]

    async def claim_stale(
        self, status: AttachmentStatus, before: datetime, now: datetime, *, limit: int = 100
    ) -> list[Attachment]:
        check_limit(limit)
        params = {"status": str(status), "before": before, "now": now, "limit": limit}
        return [_attachment(r) for r in await self._all(_CLAIM_STALE, params)]
