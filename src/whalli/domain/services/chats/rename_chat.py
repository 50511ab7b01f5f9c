"""Use case: give a chat another title."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.chats import Chat
from whalli.domain.services.chats.access import require_chat
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class RenameChat(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID
    title: str | None  # None: nothing to change (still only for those who may rename it)


class RenameChatHandler:
    """Rename a chat.

    Rules:
    - owners and editors of the chat's project may rename it; a viewer gets
      ``PermissionDenied``, a non-member ``ChatNotFound`` (access is checked before the title,
      so that a stranger learns nothing from the answer);
    - whitespace runs become one space; the title needs 1 to ``TITLE_MAX`` characters
      (``InvalidInput``);
    - renaming counts as an update: the chat moves to the top of its project's list;
    - no title (an empty PATCH) changes nothing, but is still checked like a rename: a viewer
      gets ``PermissionDenied``, not the chat.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: RenameChat) -> Chat:
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "write")
            if command.title is None:
                return chat
            chat.rename(command.title, self._clock.now())
            await uow.chats.update(chat)
            await uow.commit()
        return chat
