"""Importing chats exported from another service: POST /api/chats/import."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from whalli.domain.model.chat_imports import MAX_CONVERSATIONS, MAX_MESSAGES
from whalli.domain.model.chats import MESSAGE_MAX
from whalli.domain.model.principal import Principal
from whalli.domain.services.chats.import_chats import ImportChats, ImportChatsHandler
from whalli.entrypoints.http.schemas import Inbound, Schema

# An export runs to tens of megabytes: above the app's default body limit (10 MB).
IMPORT_BODY_MAX = 20 * 1024 * 1024


class ChatImport(Inbound):
    format: Literal["chatgpt"]
    # the array as exported (ChatGPT: the content of conversations.json)
    conversations: list[Any]
    project_id: UUID | None = None  # default: the personal project


class ImportedChat(Schema):
    chat_id: UUID
    title: str
    messages: int


class SkippedConversation(Schema):
    index: int
    reason: str
    title: str | None = None  # left out when the conversation had none


class ImportResult(Schema):
    imported: list[ImportedChat]
    skipped: list[SkippedConversation]


class ChatImportController(Controller):
    path = "/api/chats"
    tags = ["chats"]

    @post(
        "/import",
        summary="Import conversations exported from ChatGPT as new chats (owners and editors)",
        description=(
            'Body: `format: "chatgpt"`, `conversations`: the array of ChatGPT\'s '
            "`conversations.json`, and an optional `projectId` (default: the personal "
            "project). Each conversation becomes a chat with the user and assistant turns "
            "shown in ChatGPT (the branch up to its current message), with their times; "
            "conversations that cannot be read or have no text are listed in `skipped` with "
            f"a reason. At most {MAX_CONVERSATIONS} conversations and {MAX_MESSAGES} messages "
            f"(413), each message at most {MESSAGE_MAX} characters (422), a body of at most "
            f"{IMPORT_BODY_MAX} bytes (413). All chats are written at once, or none."
        ),
        request_max_body_size=IMPORT_BODY_MAX,
    )
    async def import_chats(
        self,
        principal: NamedDependency[Principal],
        import_chats: NamedDependency[ImportChatsHandler],
        data: JSONBody[ChatImport],
    ) -> ImportResult:
        result = await import_chats.execute(
            ImportChats(
                user_id=principal.user_id,
                format=data.format,
                conversations=data.conversations,
                project_id=data.project_id,
            )
        )
        return ImportResult(
            imported=[
                ImportedChat(chat_id=c.chat_id, title=c.title, messages=c.messages)
                for c in result.imported
            ],
            skipped=[
                SkippedConversation(index=s.index, reason=s.reason, title=s.title)
                for s in result.skipped
            ],
        )
