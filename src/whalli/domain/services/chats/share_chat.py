"""Use case: make a public read-only link to a snapshot of a chat."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from whalli.domain.model.errors import ShareLimitReached
from whalli.domain.model.shares import MAX_LIVE_SHARES, SHARE_TOKEN_BYTES, ChatShare
from whalli.domain.services.chats.access import require_chat
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork


class ShareChat(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID
    expires_at: datetime | None = None  # None: the link lasts until revoked


class NewShare(msgspec.Struct, frozen=True, kw_only=True):
    share: ChatShare
    token: str  # shown this once: only its hash is stored


class ShareChatHandler:
    """Share a chat by an unguessable link that anyone may read without signing in.

    Rules:
    - owners and editors of the chat's project may share it; a viewer gets
      ``PermissionDenied``, a non-member ``ChatNotFound`` (as for a missing chat);
    - the link shows a snapshot: the chat's messages finished when it is made (a reply still
      being generated, and every later message, is left out; see ``domain.model.shares``);
    - the token carries 256 random bits and is returned once; only its SHA-256 is stored;
    - a link may expire: ``expires_at`` in the future, at most ``SHARE_MAX_LIFETIME`` away,
      with a UTC offset (else ``InvalidInput``); an expired link opens nothing;
    - a chat has at most ``MAX_LIVE_SHARES`` live links, neither revoked nor expired
      (``ShareLimitReached``); the chat is locked while they are counted, so two requests at
      once cannot both take the last one.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock, ids: IdGenerator) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids

    async def execute(self, command: ShareChat) -> NewShare:
        now = self._clock.now()
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "write", lock=True)
            if await uow.shares.count_live(chat.id, now) >= MAX_LIVE_SHARES:
                raise ShareLimitReached(
                    f"A chat has at most {MAX_LIVE_SHARES} shared links; revoke one first.",
                    limit=MAX_LIVE_SHARES,
                )
            token = self._ids.new_token(SHARE_TOKEN_BYTES)
            share = ChatShare.create(
                id=self._ids.new_id(), chat_id=chat.id, created_by=command.user_id, token=token,
                title=chat.title, messages=await uow.chats.list_messages(chat.id),
                now=now, expires_at=command.expires_at,
            )  # fmt: skip
            await uow.shares.add(share)
            await uow.commit()
        return NewShare(share=share, token=token)
