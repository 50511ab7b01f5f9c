"""Use case: a project's files, newest first."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.attachments import Attachment
from whalli.domain.model.errors import InvalidInput, ProjectNotFound
from whalli.domain.services.projects.access import require_role
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.ports.unit_of_work import UnitOfWork

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class ListAttachments(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID | None = None  # None: the caller's personal project
    limit: int = DEFAULT_LIMIT


class ListAttachmentsHandler:
    """List the files of a project, newest first.

    Rules:
    - any member may list a project's files; a non-member gets ``ProjectNotFound`` (404);
    - no ``project_id`` means the caller's personal project; a caller who has none yet has no
      files (an empty list, not an error);
    - ``limit`` is 1 to 500 (``InvalidInput``).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListAttachments) -> list[Attachment]:
        if not 1 <= command.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1 to {MAX_LIMIT}.", field="limit")
        personal = command.project_id is None
        project_id = command.project_id or personal_project_id(command.user_id)
        async with self._uow as uow:
            try:
                await require_role(uow, project_id, command.user_id, "read")
            except ProjectNotFound:
                if personal:
                    return []
                raise
            return await uow.attachments.list_for_project(project_id, limit=command.limit)
