"""Use case: anyone with a link reads the chat snapshot it shares (no sign-in)."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec

from whalli.domain.model.chats import MessageRole
from whalli.domain.model.errors import NotFound, PermissionDenied, ShareNotFound
from whalli.domain.model.shares import SharedMessage, hash_share_token
from whalli.domain.services.projects.access import require_role
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork

# What ``token_urlsafe`` produces, with room: anything else is not a token we issued.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


class ReadSharedChat(msgspec.Struct, frozen=True, kw_only=True):
    token: str


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
    - it shows the snapshot made with the link (``domain.model.shares``): the chat's title and
      finished messages of then, as they were then (later edits, regenerations and renames do
      not show through), with their role, text, model, time and status (a stopped or failed
      reply says so; a failed one with no text is left out): never who wrote them, the
      project, attachments, costs, usage or errors, nor the chat's system prompt (it may hold
      private instructions).
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
        messages = share.messages
        replies = [m.model for m in messages if m.role is MessageRole.ASSISTANT and m.model]
        return SharedChat(
            title=share.title, model=replies[-1] if replies else None,
            shared_at=share.created_at, messages=messages,
        )  # fmt: skip
