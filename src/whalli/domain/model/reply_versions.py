"""Earlier versions of a reply: what a regeneration replaced, kept to be read and restored.

A regeneration no longer throws the reply it replaces away: the reply leaves the conversation
(it is never again sent as context, shown among the chat's messages, shared, forked, exported or
found by search) and stays as an earlier version of the answer to its question, with the text
that question had when it was answered (an edit may have changed it since). The chat's last
reply can be switched back to one of them, as a chat app's "< 2/3 >" does.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.domain.model.base import Value
from whalli.domain.model.chats import Message, MessageRole
from whalli.domain.model.errors import NothingToRegenerate, ReplyInProgress

# Earlier versions kept per question: the oldest (by when they were generated) go beyond it.
MAX_EARLIER_VERSIONS = 20


class ReplyVersion(Value, frozen=True, kw_only=True):
    reply: Message
    question_id: UUID  # the user's message it answered
    asked: str  # that message's text when this reply answered it
    replaced_at: datetime


def last_exchange(messages: list[Message]) -> tuple[list[Message], Message, Message | None]:
    """Split a conversation (oldest first) into the messages before its last user message, that
    message, and the finished reply to it that ends the chat (``None`` when the chat ends with
    the user's message, unanswered). ``ReplyInProgress`` while that reply is still being
    generated; ``NothingToRegenerate`` when the chat ends otherwise (empty, or a reply to no
    question)."""
    if messages and messages[-1].role is MessageRole.USER:
        return messages[:-1], messages[-1], None
    if len(messages) < 2 or messages[-1].role is not MessageRole.ASSISTANT:
        raise NothingToRegenerate()
    old = messages[-1]
    if not old.status.is_final:
        raise ReplyInProgress()
    if messages[-2].role is not MessageRole.USER:
        raise NothingToRegenerate()
    return messages[:-2], messages[-2], old
