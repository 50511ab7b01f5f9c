"""Use case: import conversations exported from another chat service as new chats."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec

from whalli.domain.model.chat_imports import (
    Parser,
    SkippedConversation,
    build_chat,
    check_limits,
)
from whalli.domain.model.chatgpt_export import parse_chatgpt
from whalli.domain.model.errors import InvalidInput
from whalli.domain.services.chats.bulk import add_chat_with_messages
from whalli.domain.services.projects.access import project_to_write
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork

# The formats an import reads, by name; another format's parser goes beside ChatGPT's.
PARSERS: dict[str, Parser] = {"chatgpt": parse_chatgpt}


class ImportChats(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    format: str
    conversations: Any  # the exported document, as decoded from JSON
    project_id: UUID | None = None  # None: the caller's personal project


class ImportedChat(msgspec.Struct, frozen=True, kw_only=True):
    chat_id: UUID
    title: str
    messages: int


class ImportResult(msgspec.Struct, frozen=True, kw_only=True):
    imported: list[ImportedChat]
    skipped: list[SkippedConversation]


class ImportChatsHandler:
    """Import an export's conversations, each as a new chat with its messages.

    Rules:
    - the format must be known (``PARSERS``, else ``InvalidInput``); its parser turns the
      document into conversations, skipping (with a reason) those it cannot read or that keep
      no user or assistant message; a document that is not a list is ``InvalidInput``;
    - at most ``MAX_CONVERSATIONS`` conversations and ``MAX_MESSAGES`` messages, each message
      at most ``MESSAGE_MAX`` characters: more refuses the whole import (``ImportTooLarge``,
      ``InvalidInput``), before anything is read or written;
    - the chats go to ``project_id`` (owners and editors: a viewer gets ``PermissionDenied``,
      a non-member ``ProjectNotFound``) or the caller's personal project (always theirs);
    - titles and times come from the export (``chat_imports.build_chat``); assistant messages
      are complete, from provider ``imported``, with no usage or cost recorded;
    - every accepted conversation is written in one transaction: all of them or none.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock, ids: IdGenerator) -> None:
        self._uow, self._clock, self._ids = uow, clock, ids

    async def execute(self, command: ImportChats) -> ImportResult:
        parser = PARSERS.get(command.format)
        if parser is None:
            known = ", ".join(sorted(PARSERS))
            raise InvalidInput(f"Unknown import format; known: {known}.", field="format")
        parsed = parser(command.conversations)
        accepted = check_limits(parsed)
        skipped = [p for p in parsed if isinstance(p, SkippedConversation)]
        now = self._clock.now()
        imported: list[ImportedChat] = []
        async with self._uow as uow:
            project_id = await project_to_write(uow, command.user_id, command.project_id)
            for conversation in accepted:
                chat, messages = build_chat(
                    conversation, project_id=project_id, user_id=command.user_id, now=now,
                    new_id=self._ids.new_id,
                )  # fmt: skip
                await add_chat_with_messages(uow, chat, messages)
                imported.append(
                    ImportedChat(chat_id=chat.id, title=chat.title, messages=len(messages))
                )
            await uow.commit()
        return ImportResult(imported=imported, skipped=skipped)
