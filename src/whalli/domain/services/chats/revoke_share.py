"""Use case: revoke a shared link to a chat."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import ShareNotFound
from whalli.domain.services.chats.access import require_chat
from whalli.domain.services.projects.access import require_role
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class RevokeChatShare(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID
    share_id: UUID


class RevokeChatShareHandler:
    """Revoke a link: from then on it answers ``ShareNotFound``.

    Rules:
    - a non-member of the chat's project gets ``ChatNotFound``; a link that is not the chat's,
      or is already revoked, ``ShareNotFound``;
    - the link's creator may revoke it whatever their role now; anyone else needs to be an
      owner or editor (a viewer gets ``PermissionDenied``).
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: RevokeChatShare) -> None:
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "read")
            share = await uow.shares.find(command.share_id)
            if share is None or share.chat_id != chat.id or not share.is_live:
                raise ShareNotFound("Shared link not found.")
            if share.created_by != command.user_id:
                await require_role(uow, chat.project_id, command.user_id, "write")
            if not await uow.shares.revoke(share.id, self._clock.now()):
                raise ShareNotFound("Shared link not found.")  # revoked meanwhile
            await uow.commit()
