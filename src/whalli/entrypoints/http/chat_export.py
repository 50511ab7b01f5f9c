"""A chat as a Markdown document, for ``GET /api/chats/{id}/export``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from whalli.domain.model.chats import Chat, Message, MessageRole, MessageStatus, visible_words

_NOTES = {
    MessageStatus.ABORTED: "stopped before the end",
    MessageStatus.PENDING: "still being written when exported",
    MessageStatus.STREAMING: "still being written when exported",
}


def chat_markdown(chat: Chat, messages: Sequence[Message]) -> str:
    """The title, the system prompt (quoted), then each message under its author and time
    (a reasoning model's thinking quoted before its answer); a reply that was stopped, failed
    or unfinished says so. Message text is kept as written
    (replies are Markdown already)."""
    parts = [f"# {chat.title}", f"*{_when(chat.created_at)} · {len(messages)} messages*"]
    if chat.system_prompt:
        parts.append(f"**System prompt**\n\n{_quoted(chat.system_prompt)}")
    for message in messages:
        parts.append("---")
        parts.append(f"**{_author(message)}** · {_when(message.created_at)}")
        if message.reasoning:  # quoted, as the system prompt: apart from the answer
            parts.append(f"*Reasoning*\n\n{_quoted(message.reasoning)}")
        if message.content:
            parts.append(message.content)
        if message.attachment_ids:
            count = len(message.attachment_ids)
            parts.append(f"*({count} attached file{'s' if count != 1 else ''})*")
        note = _note(message)
        if note:
            parts.append(f"*({note})*")
    return "\n\n".join(parts) + "\n"


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines())


def _author(message: Message) -> str:
    if message.role is MessageRole.ASSISTANT:
        # one line whatever the stored name (an import made before its names were cleaned)
        model = visible_words(message.model or "")
        return f"Assistant ({model})" if model else "Assistant"
    return "User" if message.role is MessageRole.USER else "System"


def _note(message: Message) -> str | None:
    if message.status is MessageStatus.FAILED:
        return f"failed: {message.error}" if message.error else "failed"
    return _NOTES.get(message.status)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
