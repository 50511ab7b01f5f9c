"""Use case: anyone with a link reads the chat snapshot it shares (no sign-in)."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from whalli.domain.model.chats import MessageRole
from whalli.domain.model.errors import ChatNotFound, ShareNotFound
from whalli.domain.model.shares import hash_share_token
from whalli.ports.unit_of_work import UnitOfWork

# What ``token_urlsafe`` produces, with room: anything else is not a token we issued.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


class ReadSharedChat(msgspec.Struct, frozen=True, kw_only=True):
    token: str


class SharedMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: MessageRole
    content: str
    model: str | None
    created_at: datetime


class SharedChat(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    model: str | None  # the model of the last reply shown, if any
    shared_at: datetime
    messages: tuple[SharedMessage, ...]


class ReadSharedChatHandler:
    """The snapshot a link shows, and nothing else about the chat.

    Rules:
    - a token that is malformed, unknown or revoked, or whose chat was deleted, gets
      ``ShareNotFound`` (all alike, so links cannot be probed);
    - only the snapshot's messages still in the chat are shown (a message deleted since, such
      as a regenerated reply, is gone), with their role, text, model and time: never who wrote
      them, the project, attachments, costs, usage or errors, nor the chat's system prompt
      (it may hold private instructions).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ReadSharedChat) -> SharedChat:
        if _TOKEN.fullmatch(command.token) is None:
            raise ShareNotFound()
        async with self._uow as uow:
            share = await uow.shares.find_by_hash(hash_share_token(command.token))
            if share is None or not share.is_live:
                raise ShareNotFound()
            try:
                chat = await uow.chats.get(share.chat_id)
            except ChatNotFound:
                raise ShareNotFound() from None
            shown = set(share.message_ids)
            messages = [m for m in await uow.chats.list_messages(chat.id) if m.id in shown]
        replies = [m.model for m in messages if m.role is MessageRole.ASSISTANT and m.model]
        return SharedChat(
            title=chat.title, model=replies[-1] if replies else None, shared_at=share.created_at,
            messages=tuple(
                SharedMessage(role=m.role, content=m.content, model=m.model,
                              created_at=m.created_at)
                for m in messages
            ),
        )  # fmt: skip
