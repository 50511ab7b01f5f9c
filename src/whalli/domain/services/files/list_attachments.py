"""Use case: one page of a project's files, newest first."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.attachments import Attachment
from whalli.domain.model.base import Value
from whalli.domain.model.errors import InvalidInput, ProjectNotFound
from whalli.domain.services.chats.cursor import decode_cursor, encode_cursor
from whalli.domain.services.projects.access import require_role
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.ports.unit_of_work import UnitOfWork

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class ListAttachments(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID | None = None  # None: the caller's personal project
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None  # the ``next_cursor`` of the page before


class AttachmentPage(Value, frozen=True, kw_only=True):
    items: list[Attachment]
    next_cursor: str | None  # None on the last page


class ListAttachmentsHandler:
    """List the files of a project, newest first (by ``created_at``, then id), a page at a time.

    Rules:
    - any member may list a project's files; a non-member gets ``ProjectNotFound`` (404);
    - no ``project_id`` means the caller's personal project; a caller who has none yet has no
      files (an empty page, not an error);
    - ``limit`` is 1 to 500 (``InvalidInput``);
    - ``next_cursor`` is an opaque URL-safe string naming the last file of the page, present
      only when more files follow; passing it back returns the next page, and paging through
      neither repeats nor skips a file (a file's place never changes); a cursor this service
      did not issue is ``InvalidInput``. The cursor is the one chat lists use
      (``chats.cursor``).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListAttachments) -> AttachmentPage:
        if not 1 <= command.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1 to {MAX_LIMIT}.", field="limit")
        before = None if command.cursor is None else decode_cursor(command.cursor)
        personal = command.project_id is None
        project_id = command.project_id or personal_project_id(command.user_id)
        async with self._uow as uow:
            try:
                await require_role(uow, project_id, command.user_id, "read")
            except ProjectNotFound:
                if personal:
                    return AttachmentPage(items=[], next_cursor=None)
                raise
            # One more than asked tells whether another page follows.
            found = await uow.attachments.list_for_project(
                project_id, limit=command.limit + 1, before=before
            )
        items = found[: command.limit]
        last = items[-1] if len(found) > command.limit else None
        next_cursor = None if last is None else encode_cursor((last.created_at, last.id))
        return AttachmentPage(items=items, next_cursor=next_cursor)
