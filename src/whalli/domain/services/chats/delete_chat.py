"""Use case: delete a chat and its messages."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.services.chats.access import require_chat
from whalli.ports.unit_of_work import UnitOfWork


class DeleteChat(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID


class DeleteChatHandler:
    """Delete a chat with all its messages, in one transaction.

    Rules:
    - owners and editors of the chat's project may delete it; a viewer gets
      ``PermissionDenied``, a non-member ``ChatNotFound`` (as for an id that does not exist);
    - the repository deletes the messages with the chat; usage records stay (they are billing
      history) and lose their link to the deleted messages.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: DeleteChat) -> None:
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "write")
            await uow.chats.delete(chat.id)
            await uow.commit()
