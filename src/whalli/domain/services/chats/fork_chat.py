"""Use case: fork a chat, a new chat holding a copy of its conversation up to one message."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.chat_forks import forked_messages
from whalli.domain.model.chats import Chat
from whalli.domain.services.chats.access import require_chat
from whalli.domain.services.chats.bulk import add_chat_with_messages
from whalli.domain.services.chats.get_chat import ChatWithMessages
from whalli.domain.services.projects.access import project_to_write
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork


class ForkChat(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID
    message_id: UUID | None = None  # the last message copied; None: the whole conversation
    project_id: UUID | None = None  # None: the caller's personal project
    title: str | None = None  # None: the chat's


class ForkChatHandler:
    """Fork a chat: the caller goes on from one of its messages in a chat of their own.

    Rules:
    - every member who may read the chat may fork it (a non-member gets ``ChatNotFound``, as
      for a missing chat), into ``project_id`` if they may write there (owners and editors:
      ``require_role``'s errors otherwise) or their personal project;
    - the fork copies the conversation up to and including ``message_id`` (see
      ``domain.model.chat_forks``: finished messages only, with their models, usage and times;
      naming a reply still being generated is ``ReplyInProgress``) and the system prompt; not
      the feedback, the share links, the pin or the archive mark;
    - except out of a personal project (the caller's, or one whose owner added the caller)
      into another: there a chat's system prompt may be its owner's custom instructions,
      which never go to a shared project (see ``StartChat``), so that fork has none (they may
      give it one with ``UpdateChat``);
    - its title is the chat's, or ``title`` (1 to ``TITLE_MAX`` characters, spaces folded);
      the caller owns it, and it is new: first in the newest-first list;
    - attachment links are kept only in a fork in the same project: a file belongs to its
      project, and the members of another could not open it;
    - the fork and all its messages are written in one transaction; the chat forked from is
      not changed.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock, ids: IdGenerator) -> None:
        self._uow, self._clock, self._ids = uow, clock, ids

    async def execute(self, command: ForkChat) -> ChatWithMessages:
        now = self._clock.now()
        async with self._uow as uow:
            source = await require_chat(uow, command.chat_id, command.user_id, "read")
            project_id = await project_to_write(uow, command.user_id, command.project_id)
            # out of a personal project (anyone's: its owner may have added members), a system
            # prompt may be the owner's private custom instructions
            private = project_id != source.project_id and (
                source.project_id == personal_project_id(command.user_id)
                or (await uow.projects.get(source.project_id)).personal
            )
            fork = Chat(
                id=self._ids.new_id(), project_id=project_id, user_id=command.user_id,
                title=source.title, created_at=now, updated_at=now,
                system_prompt=None if private else source.system_prompt,
            )  # fmt: skip
            if command.title is not None:
                fork.rename(command.title, now)
            messages = forked_messages(
                await uow.chats.list_messages(source.id), up_to=command.message_id,
                chat_id=fork.id, new_id=self._ids.new_id,
                keep_attachments=project_id == source.project_id,
            )  # fmt: skip
            await add_chat_with_messages(uow, fork, messages)
            await uow.commit()
        return ChatWithMessages(chat=fork, messages=messages)
