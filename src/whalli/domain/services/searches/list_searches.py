"""Use case: one page of a project's recurring searches, newest first."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.errors import ProjectNotFound
from whalli.domain.model.searches import SearchSubscription
from whalli.domain.services.projects.access import require_role
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.domain.services.searches.access import DEFAULT_PAGE_SIZE, next_cursor, page_start
from whalli.ports.unit_of_work import UnitOfWork


class ListSearches(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID | None = None  # None: the caller's personal project
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None


class SearchPage(Value, frozen=True, kw_only=True):
    items: list[SearchSubscription]
    next_cursor: str | None  # None on the last page


class ListSearchesHandler:
    """The subscriptions of a project (every member's), newest first (``created_at``, id).

    Rules: any member may list them, a non-member gets ``ProjectNotFound``; no project: the
    caller's personal one (none yet: an empty page); ``limit`` 1 to 100 and the cursor as chat
    lists have them (``InvalidInput`` otherwise)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListSearches) -> SearchPage:
        before = page_start(command.limit, command.cursor)
        project_id = command.project_id or personal_project_id(command.user_id)
        async with self._uow as uow:
            try:
                await require_role(uow, project_id, command.user_id, "read")
            except ProjectNotFound:
                if command.project_id is None:
                    return SearchPage(items=[], next_cursor=None)
                raise
            found = await uow.searches.list_for_project(
                project_id, limit=command.limit + 1, before=before
            )
        items = found[: command.limit]
        last = (items[-1].created_at, items[-1].id) if items else None
        cursor = None if last is None else next_cursor(len(found), command.limit, last)
        return SearchPage(items=items, next_cursor=cursor)
