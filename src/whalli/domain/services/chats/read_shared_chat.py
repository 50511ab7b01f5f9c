"""Use case: anyone with a link reads the chat snapshot it shares (no sign-in)."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from whalli.domain.model.chats import Message, MessageRole, MessageStatus
from whalli.domain.model.errors import NotFound, PermissionDenied, ShareNotFound
from whalli.domain.model.shares import ChatShare, hash_share_token, shown_in_link
from whalli.domain.services.projects.access import require_role
from whalli.ports.clock import Clock
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
    status: MessageStatus  # a reply stopped (aborted) or failed says so; never why


class SharedChat(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    model: str | None  # the model of the last reply shown, if any
    shared_at: datetime
    messages: tuple[SharedMessage, ...]


class ReadSharedChatHandler:
    """The snapshot a link shows, and nothing else about the chat.

    Rules:
    - a token that is malformed, unknown, revoked or expired, or whose chat was deleted, gets
      ``ShareNotFound`` (all alike, so links cannot be probed);
    - a link lives only as long as its creator could still share the chat: once their account
      is disabled, or they may no longer read the chat's project (removed from it), it gets
      ``ShareNotFound`` too (a link made with a stolen session dies with the account's
      disabling; a member removed for cause keeps no window on the project);
    - it shows the title the chat had when the link was made, and only the snapshot's messages
      still in the chat (a message deleted since, such as a regenerated reply, is gone), with
      their role, text, model, time and status (a stopped or failed reply says so; a failed
      one with no text is left out): never who wrote them, the project, attachments, costs,
      usage or errors, nor the chat's system prompt (it may hold private instructions).
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: ReadSharedChat) -> SharedChat:
        if _TOKEN.fullmatch(command.token) is None:
            raise ShareNotFound()
        async with self._uow.read_only() as uow:
            share = await uow.shares.find_by_hash(hash_share_token(command.token))
            if share is None or not share.opens_at(self._clock.now()):
                raise ShareNotFound()
            try:
                chat = await uow.chats.get(share.chat_id)
                if (await uow.users.get(share.created_by)).disabled:
                    raise ShareNotFound()
                await require_role(uow, chat.project_id, share.created_by, "read")
            except (NotFound, PermissionDenied):
                raise ShareNotFound() from None
            messages = _shown(share, await uow.chats.list_messages(chat.id))
        replies = [m.model for m in messages if m.role is MessageRole.ASSISTANT and m.model]
        return SharedChat(
            title=share.title, model=replies[-1] if replies else None,
            shared_at=share.created_at,
            messages=tuple(
                SharedMessage(role=m.role, content=m.content, model=m.model,
                              created_at=m.created_at, status=m.status)
                for m in messages
            ),
        )  # fmt: skip


def _shown(share: ChatShare, messages: list[Message]) -> list[Message]:
    """The snapshot's messages still in the chat, by the snapshot's own rule."""
    snapshot = set(share.message_ids)
    return [m for m in messages if m.id in snapshot and shown_in_link(m)]
