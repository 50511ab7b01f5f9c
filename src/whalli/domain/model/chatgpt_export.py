"""ChatGPT's data export (``conversations.json``), read into conversations to import.

Each conversation is a tree of nodes (``mapping``): edits and regenerations are branches. The
conversation shown is the path from the root to ``current_node``; other branches are left out.
Only user and assistant turns with text are kept: system, tool and hidden messages
(``is_visually_hidden_from_conversation``), non-text content (images, quotes, browsing
results) and blank messages are dropped. A conversation that is not what the format describes,
or keeps no message, is skipped with a reason; nothing here raises for a conversation.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from whalli.domain.model.chat_imports import (
    Parsed,
    ParsedConversation,
    ParsedMessage,
    SkippedConversation,
    check_count,
)
from whalli.domain.model.chats import MessageRole, visible_words
from whalli.domain.model.errors import InvalidInput

_ROLES = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT}
_TEXT_TYPES = frozenset({"text", "multimodal_text"})
_MODEL_MAX = 200
_BACKTICKS = re.compile("`+")


def parse_chatgpt(document: object) -> list[Parsed]:
    """One result per exported conversation, in order. Raises ``InvalidInput`` when the
    document is not a list (of conversations)."""
    if not isinstance(document, list):
        raise InvalidInput(
            "A ChatGPT export (conversations.json) is a JSON array of conversations.",
            field="conversations",
        )
    check_count(len(document))  # before parsing: each item parsed costs an object
    return [parse_conversation(index, item) for index, item in enumerate(document)]


def parse_conversation(index: int, item: object) -> Parsed:
    if not isinstance(item, dict):
        return SkippedConversation(index=index, title=None, reason="not a conversation object")
    title = _text(item.get("title"))
    mapping = item.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        return _skip(index, title, "it has no messages (no mapping)")
    leaf = _current_node(mapping, item.get("current_node"))
    if leaf is None:
        return _skip(index, title, "its current message could not be found")
    messages = tuple(m for m in map(_message, _path(mapping, leaf)) if m is not None)
    if not messages:
        return _skip(index, title, "it has no user or assistant message with text")
    return ParsedConversation(
        index=index,
        title=title or "",
        created_at=_time(item.get("create_time")),
        updated_at=_time(item.get("update_time")),
        messages=messages,
    )


def _skip(index: int, title: str | None, reason: str) -> SkippedConversation:
    return SkippedConversation(index=index, title=title or None, reason=reason)


def _current_node(mapping: dict[str, Any], current: object) -> str | None:
    """``current_node``, or when it is missing or unknown, the leaf (a node whose children
    are all unknown) with the latest message, the last one in the document on a tie."""
    if isinstance(current, str) and current in mapping:
        return current
    best: tuple[float, int, str] | None = None
    for order, (node_id, node) in enumerate(mapping.items()):
        if not isinstance(node, dict):
            continue
        children = node.get("children")
        if isinstance(children, list) and any(
            isinstance(c, str) and c in mapping for c in children
        ):
            continue
        message = node.get("message")
        at = _time(message.get("create_time")) if isinstance(message, dict) else None
        key = (at.timestamp() if at else -math.inf, order, node_id)
        if best is None or key > best:
            best = key
    return None if best is None else best[2]


def _path(mapping: dict[str, Any], leaf: str) -> list[object]:
    """The messages from the root to ``leaf``. A cycle of ``parent`` links ends the path where
    it closes (each node is visited once)."""
    messages: list[object] = []
    seen: set[str] = set()
    node_id: object = leaf
    while isinstance(node_id, str) and node_id in mapping and node_id not in seen:
        seen.add(node_id)
        node = mapping[node_id]
        if not isinstance(node, dict):
            break
        messages.append(node.get("message"))
        node_id = node.get("parent")
    messages.reverse()
    return messages


def _message(message: object) -> ParsedMessage | None:
    if not isinstance(message, dict):
        return None
    author = message.get("author")
    name = author.get("role") if isinstance(author, dict) else None
    role = _ROLES.get(name) if isinstance(name, str) else None
    metadata = message.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    if role is None or metadata.get("is_visually_hidden_from_conversation") is True:
        return None
    recipient = message.get("recipient")
    content = message.get("content")
    kind = content.get("content_type") if isinstance(content, dict) else None
    if role is MessageRole.ASSISTANT and recipient not in (None, "all") and kind != "code":
        return None  # a call to a tool (DALL-E, browsing, memory): ChatGPT does not show it
    content = _content(content)
    if content is None:
        return None
    slug = _model_slug(metadata.get("model_slug"))
    model = f"chatgpt/{slug}"[:_MODEL_MAX] if slug and role is MessageRole.ASSISTANT else None
    return ParsedMessage(
        role=role, content=content, created_at=_time(message.get("create_time")), model=model
    )


def _content(content: object) -> str | None:
    """The text of a message's content, or None when it has none: text parts joined by a blank
    line (images and other non-text parts dropped); code as a fenced block."""
    if not isinstance(content, dict):
        return None
    kind = content.get("content_type")
    text: str | None = None
    if isinstance(kind, str) and kind in _TEXT_TYPES:  # (a list or an object is not a type)
        parts = content.get("parts")
        if isinstance(parts, list):
            text = "\n\n".join(p for p in (_text(p) for p in parts) if p and p.strip())
    elif kind == "code":
        code = _text(content.get("text"))
        if code and code.strip():
            language = _text(content.get("language")) or ""
            language = "" if language == "unknown" else "".join(language.split())
            # a fence longer than any run of backticks in the code, which cannot close it
            longest = max((len(run) for run in _BACKTICKS.findall(code)), default=0)
            fence = "`" * max(3, longest + 1)
            text = f"{fence}{language}\n{code.strip(chr(10))}\n{fence}"
    if text is None or not text.strip():
        return None
    return text


def _model_slug(value: object) -> str | None:
    """The model an answer names, one line of visible text (``visible_words``), as an imported
    title: it is free text from the file, shown wherever a reply's model is (an export's author
    line among them), so a line break, an escape sequence or a direction override is left out;
    None when nothing visible is left."""
    return (visible_words(value) or None) if isinstance(value, str) else None


def _text(value: object) -> str | None:
    """A string as stored (Postgres text holds no NUL character), else None."""
    return value.replace("\x00", "") if isinstance(value, str) else None


def _time(value: object) -> datetime | None:
    """Epoch seconds as an aware UTC time; None when missing or not a usable time."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC) if value >= 0 else None
    except (OverflowError, OSError, ValueError):
        return None
