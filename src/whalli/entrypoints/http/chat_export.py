"""A chat as a Markdown document, for ``GET /api/chats/{id}/export``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from uuid import UUID

from whalli.domain.model.chats import Chat, Message, MessageRole, MessageStatus, visible_words

_NOTES = {
    MessageStatus.ABORTED: "stopped before the end",
    MessageStatus.PENDING: "still being written when exported",
    MessageStatus.STREAMING: "still being written when exported",
}
# A code fence as CommonMark reads one outside any list or quote: up to 3 spaces, then 3 or more
# backticks or tildes, then the rest of the line (an opening fence's info string).
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_LINE_END = re.compile(r"\r\n|\r|\n")
# What Markdown reads as formatting in a line of text (a file's name is the client's)
_MARKUP = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def chat_markdown(
    chat: Chat, messages: Sequence[Message], file_names: Mapping[UUID, str] | None = None
) -> str:
    """The title, the system prompt (quoted), then each message under its author and time
    (a reasoning model's thinking quoted before its answer); a reply that was stopped, failed
    or unfinished says so. A message's attached files are named (``file_names``: those still
    there), a file deleted since only counted. Message text is kept as written (replies are
    Markdown already), but for a code block it leaves open (a reply cut or stopped
    mid-block), which is closed: the rest of the document would read as code."""
    # a title ending in a hash keeps it (CommonMark takes " #" at a heading's end as a closing)
    title = chat.title[:-1] + "\\#" if chat.title.endswith("#") else chat.title
    total = f"{len(messages)} message{'' if len(messages) == 1 else 's'}"
    parts = [f"# {title}", f"*{_when(chat.created_at)} · {total}*"]
    if chat.system_prompt:
        parts.append(f"**System prompt**\n\n{_quoted(chat.system_prompt)}")
    for message in messages:
        parts.append("---")
        parts.append(f"**{_author(message)}** · {_when(message.created_at)}")
        if message.reasoning:  # quoted, as the system prompt: apart from the answer
            parts.append(f"*Reasoning*\n\n{_quoted(message.reasoning)}")
        if message.content:
            parts.append(_fences_closed(message.content))
        if message.attachment_ids:
            parts.append(_attached(message.attachment_ids, file_names or {}))
        note = _note(message)
        if note:
            parts.append(f"*({note})*")
    return "\n\n".join(parts) + "\n"


def _attached(attachment_ids: Sequence[UUID], file_names: Mapping[UUID, str]) -> str:
    """``*(Attached: a.pdf, b.png)*``, the files gone since counted, never named."""
    names = [_escaped(file_names[i]) for i in attachment_ids if i in file_names]
    gone = len(attachment_ids) - len(names)
    if gone:
        names.append(f"{gone} file{'s' if gone != 1 else ''} deleted since")
    return f"*(Attached: {', '.join(names)})*"


def _escaped(name: str) -> str:
    return _MARKUP.sub(r"\\\1", " ".join(name.split()))


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines())


def _fences_closed(text: str) -> str:
    """``text``, and the closing fence of a code block it leaves open."""
    fence = ""
    for line in _LINE_END.split(text):
        found = _FENCE.fullmatch(line)
        if found is None:
            continue
        mark, rest = found.groups()
        if not fence:
            if not (mark[0] == "`" and "`" in rest):  # (an info string holds no backtick)
                fence = mark
        elif mark[0] == fence[0] and len(mark) >= len(fence) and not rest.strip(" \t"):
            fence = ""
    return f"{text}\n{fence}" if fence else text


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
