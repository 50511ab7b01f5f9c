"""Use case: read one chat with its messages."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.chats import Chat, Message
from whalli.domain.services.chats.access import require_chat
from whalli.ports.unit_of_work import UnitOfWork


class GetChat(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID


class ChatWithMessages(Value, frozen=True, kw_only=True):
    chat: Chat
    messages: list[Message]  # oldest first


class GetChatHandler:
    """Return a chat and its messages, oldest first, to a member of its project.

    Rules:
    - any member of the chat's project may read it; anyone else gets ``ChatNotFound``, as for
      an id that does not exist (see ``chats.access``);
    - replies still streaming are returned as stored (their status says so).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: GetChat) -> ChatWithMessages:
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "read")
            messages = await uow.chats.list_messages(chat.id)
        return ChatWithMessages(chat=chat, messages=messages)
