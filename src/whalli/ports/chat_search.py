"""Full-text search over the chats a user can read (a reader port: view structs, no entities)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.base import Value

# Characters of scripts written without spaces between words (Hiragana and Katakana, CJK
# ideographs, Hangul syllables): every store searches each as a word of its own, so a word
# inside a sentence is found (the ranges of migration 0023's whalli_search_words).
SPACELESS_CHARACTERS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"


class ChatSearchHit(Value, frozen=True, kw_only=True):
    chat_id: UUID
    project_id: UUID
    title: str
    snippet: str  # the best-matching part of a message, plain text
    updated_at: datetime
    rank: float
    # archived chats are found too (a user searches their archive); the flags say which
    pinned: bool = False
    archived: bool = False


class ChatSearch(Protocol):
    async def search(self, user_id: UUID, query: str, *, limit: int = 20) -> list[ChatSearchHit]:
        """Chats in projects the user is a member of whose title or messages match ``query``
        (words, any order), best first. An empty or blank query returns nothing."""
        ...
