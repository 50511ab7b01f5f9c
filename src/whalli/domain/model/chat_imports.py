"""Conversations imported from another chat service: what a format's parser yields, the limits
of one import, and how a parsed conversation becomes a chat with its messages.

A parser (``chatgpt_export.parse_chatgpt``, and any format added beside it) is a pure function
from the exported JSON document to one ``ParsedConversation`` or ``SkippedConversation`` per
conversation; it never raises for one malformed conversation, only skips it with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from uuid import UUID

from whalli.domain.model.base import Value
from whalli.domain.model.chats import (
    MESSAGE_MAX,
    TITLE_MAX,
    Chat,
    Message,
    MessageRole,
    MessageStatus,
    title_from,
    visible_words,
)
from whalli.domain.model.errors import ImportTooLarge, InvalidInput

MAX_CONVERSATIONS = 500
MAX_MESSAGES = 10_000
IMPORTED_PROVIDER = "imported"
_TICK = timedelta(microseconds=1)


class ParsedMessage(Value, frozen=True, kw_only=True):
    role: MessageRole  # user or assistant
    content: str  # not blank
    created_at: datetime | None = None  # as exported (UTC), None when it had none
    model: str | None = None  # e.g. "chatgpt/gpt-4o" for an assistant message


class ParsedConversation(Value, frozen=True, kw_only=True):
    index: int  # its place in the exported list
    title: str  # as exported, possibly blank
    created_at: datetime | None = None
    updated_at: datetime | None = None
    messages: tuple[ParsedMessage, ...]  # at least one, in the order shown


class SkippedConversation(Value, frozen=True, kw_only=True):
    index: int
    title: str | None
    reason: str


Parsed = ParsedConversation | SkippedConversation
Parser = Callable[[object], list[Parsed]]


def check_count(conversations: int) -> None:
    """``ImportTooLarge`` over ``MAX_CONVERSATIONS``: a parser asks before parsing any."""
    if conversations > MAX_CONVERSATIONS:
        raise ImportTooLarge(
            f"An import takes at most {MAX_CONVERSATIONS} conversations (this one has "
            f"{conversations}); split the export.",
            limit=MAX_CONVERSATIONS,
        )


def check_limits(parsed: Sequence[Parsed]) -> list[ParsedConversation]:
    """The conversations to import. Raises ``ImportTooLarge`` over ``MAX_CONVERSATIONS`` or
    ``MAX_MESSAGES`` in all, and ``InvalidInput`` for a message over ``MESSAGE_MAX``
    characters (naming its conversation): the whole import is refused, nothing is written."""
    check_count(len(parsed))
    accepted = [p for p in parsed if isinstance(p, ParsedConversation)]
    count = sum(len(c.messages) for c in accepted)
    if count > MAX_MESSAGES:
        raise ImportTooLarge(
            f"An import takes at most {MAX_MESSAGES} messages (this one has {count}); split "
            "the export.",
            limit=MAX_MESSAGES,
        )
    for conversation in accepted:
        for message in conversation.messages:
            if len(message.content) > MESSAGE_MAX:
                raise InvalidInput(
                    f"Conversation {conversation.index} has a message of "
                    f"{len(message.content)} characters; at most {MESSAGE_MAX} are allowed.",
                    field="conversations",
                    index=conversation.index,
                    limit=MESSAGE_MAX,
                )
    return accepted


def import_title(title: str, messages: Sequence[ParsedMessage]) -> str:
    """The exported title (``visible_words``: one line, no control or format characters) cut
    to ``TITLE_MAX`` characters; a blank one is made from the first user message, as a new
    chat's is."""
    cleaned = visible_words(title)
    if not cleaned:
        first = next((m for m in messages if m.role is MessageRole.USER), messages[0])
        return title_from(first.content)
    if len(cleaned) <= TITLE_MAX:
        return cleaned
    return cleaned[: TITLE_MAX - 1].rstrip() + "…"


def build_chat(
    conversation: ParsedConversation,
    *,
    project_id: UUID,
    user_id: UUID,
    now: datetime,
    new_id: Callable[[], UUID],
) -> tuple[Chat, list[Message]]:
    """The chat and its messages. Each message takes its exported time (else the one before
    it, else the conversation's, else ``now``); times only move forward (a microsecond apart
    at least, so the order shown is kept) and never past ``now``. The chat was created at the
    conversation's time (or its first message's) and updated at its last time."""
    start = min(conversation.created_at or now, now)
    chat_id = new_id()
    messages: list[Message] = []
    previous: datetime | None = None
    for parsed in conversation.messages:
        at = parsed.created_at or previous or start
        if previous is not None:
            at = max(at, previous + _TICK)
        at = min(at, now)
        assistant = parsed.role is MessageRole.ASSISTANT
        messages.append(
            Message(
                id=new_id(),
                chat_id=chat_id,
                role=parsed.role,
                content=parsed.content,
                status=MessageStatus.COMPLETE,
                model=parsed.model if assistant else None,
                provider=IMPORTED_PROVIDER if assistant else None,
                created_at=at,
                updated_at=at,
            )
        )
        previous = at
    created = min(start, messages[0].created_at)
    updated = min(max(conversation.updated_at or created, messages[-1].created_at), now)
    chat = Chat(
        id=chat_id,
        project_id=project_id,
        user_id=user_id,
        title=import_title(conversation.title, conversation.messages),
        created_at=created,
        updated_at=max(updated, created),
    )
    return chat, messages
