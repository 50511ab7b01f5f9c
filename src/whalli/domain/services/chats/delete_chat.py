"""Use case: delete a chat and its messages."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.services.chat.stop_replies import ReplyStopper
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
      history) and lose their link to the deleted messages;
    - its replies still being generated (read in the deleting transaction) are asked to stop
      once the deletion is committed (``ReplyStopper``: best effort, never failing it). A
      reply a start adds between that read and the deletion is not: it ends ``chat_deleted``
      once generated, as every reply of a deleted chat did before.
    """

    def __init__(self, uow: UnitOfWork, stopper: ReplyStopper | None = None) -> None:
        self._uow = uow
        self._stopper = stopper

    async def execute(self, command: DeleteChat) -> None:
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "write")
            unfinished = await uow.chats.unfinished_replies(chat.id) if self._stopper else []
            await uow.chats.delete(chat.id)
            await uow.commit()
        if self._stopper is not None:
            await self._stopper.stop(unfinished, of=f"deleted chat {chat.id}")
