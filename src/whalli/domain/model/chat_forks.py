"""Forks: a new chat holding a copy of another chat's conversation up to one of its messages,
to go on from there (another model, an edited question) while the original stays as it was.

What a fork copies (``forked_messages``):
- the messages up to and including the one named (all of them when none is), oldest first,
  each with its role, text, status, model, provider, usage, cost, cache flag, finish reason,
  timings, error and times, under a new id;
- only finished ones, as a share link shows them (``shares.shown_in_link``): a failed reply
  without text is left out; naming a reply still being generated is ``ReplyInProgress``, and a
  fork of the whole chat leaves such a reply out;
- attachment links only when ``keep_attachments`` (the fork stays in the files' project).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from whalli.domain.model.chats import Message
from whalli.domain.model.errors import InvalidInput, ReplyInProgress
from whalli.domain.model.shares import shown_in_link


def forked_messages(
    messages: Sequence[Message],
    *,
    up_to: UUID | None,
    chat_id: UUID,
    new_id: Callable[[], UUID],
    keep_attachments: bool,
) -> list[Message]:
    """Copies for the fork ``chat_id`` of ``messages`` (a chat's, oldest first) up to and
    including ``up_to``. Raises ``InvalidInput`` (field ``messageId``) when ``up_to`` is not one
    of them or leaves nothing to copy, ``ReplyInProgress`` when it is still being generated."""
    chosen = list(messages)
    if up_to is not None:
        index = next((i for i, m in enumerate(chosen) if m.id == up_to), None)
        if index is None:
            raise InvalidInput("messageId is not a message of this chat.", field="messageId")
        if not chosen[index].status.is_final:
            raise ReplyInProgress()
        chosen = chosen[: index + 1]
    keep = keep_attachments
    copies = [_copy(m, chat_id, new_id(), keep) for m in chosen if shown_in_link(m)]
    if not copies:
        raise InvalidInput("There is nothing to fork up to that message.", field="messageId")
    return copies


def _copy(m: Message, chat_id: UUID, id: UUID, keep_attachments: bool) -> Message:
    return Message(
        id=id, chat_id=chat_id, role=m.role, content=m.content, status=m.status, model=m.model,
        provider=m.provider, usage=m.usage, cost_usd=m.cost_usd, cached=m.cached,
        finish_reason=m.finish_reason, ttft_ms=m.ttft_ms, total_ms=m.total_ms,
        attachment_ids=m.attachment_ids if keep_attachments else (), error=m.error,
        reasoning=m.reasoning, params=m.params, created_at=m.created_at,
        updated_at=m.updated_at,
    )  # fmt: skip
