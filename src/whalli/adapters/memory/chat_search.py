"""``ChatSearch`` over the in-memory store's committed rows: every word of the query, any case."""

from __future__ import annotations

import re
from uuid import UUID

from whalli.adapters.memory._repository import check_limit
from whalli.adapters.memory.store import MemoryStore
from whalli.domain.model.chats import Chat, Message
from whalli.ports.chat_search import SPACELESS_CHARACTERS, ChatSearch, ChatSearchHit

# A character written without spaces is a word of its own; other words are runs of \w.
_WORD = re.compile(f"[{SPACELESS_CHARACTERS}]|[^\\W{SPACELESS_CHARACTERS}]+")
_SNIPPET_WORDS = 24


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def _snippet(content: str, wanted: set[str]) -> str:
    words = content.split()
    first = next((i for i, w in enumerate(words) if wanted & set(_words(w))), 0)
    start = max(0, first - _SNIPPET_WORDS // 3)
    return " ".join(words[start : start + _SNIPPET_WORDS])


def _best_message(messages: list[Message], wanted: set[str]) -> tuple[float, Message] | None:
    """The message holding every wanted word with the densest matches (then the newest)."""
    best: tuple[float, Message] | None = None
    for message in messages:
        words = _words(message.content)
        if wanted <= set(words):
            rank = 0.1 * sum(w in wanted for w in words) / len(words)
            if best is None or (rank, message.created_at) > (best[0], best[1].created_at):
                best = (rank, message)
    return best


class InMemoryChatSearch(ChatSearch):
    """As in Postgres, a chat matches when its title, or one of its messages, holds every word;
    titles weigh more than messages. Unlike Postgres, quotes (phrases), ``or`` and ``-word``
    have no special meaning here: every word of the query is simply required."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def search(self, user_id: UUID, query: str, *, limit: int = 20) -> list[ChatSearchHit]:
        check_limit(limit)
        wanted = set(_words(query))
        if not wanted:
            return []
        tables = self._store.tables
        readable = {m.project_id for m in tables["memberships"].values() if m.user_id == user_id}
        chats: list[Chat] = [c for c in tables["chats"].values() if c.project_id in readable]
        by_chat: dict[UUID, list[Message]] = {}
        for message in tables["messages"].values():
            if message.id not in tables["reply_versions"]:  # earlier versions are not found
                by_chat.setdefault(message.chat_id, []).append(message)
        hits: list[ChatSearchHit] = []
        for chat in chats:
            title_words = _words(chat.title)
            title_rank = 1.0 if wanted <= set(title_words) else 0.0
            best = _best_message(by_chat.get(chat.id, []), wanted)
            if title_rank == 0.0 and best is None:
                continue
            hits.append(
                ChatSearchHit(
                    chat_id=chat.id,
                    project_id=chat.project_id,
                    title=chat.title,
                    snippet="" if best is None else _snippet(best[1].content, wanted),
                    updated_at=chat.updated_at,
                    rank=title_rank + (0.0 if best is None else best[0]),
                    pinned=chat.pinned,
                    archived=chat.archived,
                )
            )
        hits.sort(key=lambda h: (h.rank, h.updated_at, h.chat_id), reverse=True)
        return hits[:limit]
