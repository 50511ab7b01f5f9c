"""Use case: one page of a project's chats, newest first."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.chats import Chat
from whalli.domain.model.errors import InvalidInput, ProjectNotFound
from whalli.domain.services.chats.cursor import decode_cursor, encode_cursor
from whalli.domain.services.projects.access import require_role
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.ports.unit_of_work import UnitOfWork

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class ListChats(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID | None = None
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None
    archived: bool = False  # False: the chats not archived; True: only the archived ones
    pinned: bool | None = None  # True: only pinned chats; False: only the others; None: both


class ChatPage(Value, frozen=True, kw_only=True):
    items: list[Chat]
    next_cursor: str | None  # None on the last page


class ListChatsHandler:
    """List the chats of a project, newest first (by ``updated_at``, then id).

    Rules:
    - any member may list a project's chats; a non-member gets ``ProjectNotFound`` (404);
    - no ``project_id`` means the caller's personal project; a caller who has none yet has no
      chats there (an empty page, not an error);
    - ``limit`` is 1 to 100 (``InvalidInput``);
    - ``next_cursor`` is an opaque URL-safe string naming the last chat of the page, present
      only when more chats follow; passing it back returns the next page, and paging through
      neither repeats nor skips a chat that does not change meanwhile; a cursor this service did
      not issue is ``InvalidInput``;
    - archived chats are left out unless ``archived`` asks for them (then only they are
      listed); ``pinned`` narrows to the pinned (or the unpinned) chats. The order and the
      cursor are the same within the filtered list (a cursor from another filter continues
      from its position).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListChats) -> ChatPage:
        if not 1 <= command.limit <= MAX_PAGE_SIZE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE_SIZE}.", field="limit")
        before = None if command.cursor is None else decode_cursor(command.cursor)
        personal = command.project_id is None
        project_id = command.project_id or personal_project_id(command.user_id)
        async with self._uow as uow:
            try:
                await require_role(uow, project_id, command.user_id, "read")
            except ProjectNotFound:
                if personal:
                    return ChatPage(items=[], next_cursor=None)
                raise
            # One more than asked tells whether another page follows.
            chats = await uow.chats.list_for_project(
                project_id,
                limit=command.limit + 1,
                before=before,
                archived=command.archived,
                pinned=command.pinned,
            )
        items = chats[: command.limit]
        more = len(chats) > command.limit
        last = items[-1] if more else None
        next_cursor = None if last is None else encode_cursor((last.updated_at, last.id))
        return ChatPage(items=items, next_cursor=next_cursor)
