"""Use case: the live shared links of a chat."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.shares import ChatShare
from whalli.domain.services.chats.access import require_chat
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class ListChatShares(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID


class ListChatSharesHandler:
    """The chat's links neither revoked nor expired, newest first.

    Rules:
    - every member of the chat's project may list them (viewers included: they can read the
      chat anyway); a non-member gets ``ChatNotFound``;
    - a link's token is never shown again: the list carries no way to open it.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: ListChatShares) -> list[ChatShare]:
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "read")
            return await uow.shares.list_live(chat.id, self._clock.now())
