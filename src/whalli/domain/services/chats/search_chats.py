"""Use case: full-text search over the chats the caller can read."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import InvalidInput
from whalli.ports.chat_search import ChatSearch, ChatSearchHit

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_QUERY_LENGTH = 500


class SearchChats(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    q: str
    limit: int = DEFAULT_LIMIT


class SearchChatsHandler:
    """Find the caller's readable chats whose title or messages match ``q``, best first.

    Rules:
    - only chats in projects the caller is a member of (any role) are searched (the
      ``ChatSearch`` port's contract), so a hit never reveals another user's chat;
    - ``limit`` is 1 to 100 and ``q`` at most 500 characters (``InvalidInput``);
    - a blank query finds nothing (an empty list, not an error).
    """

    def __init__(self, search: ChatSearch) -> None:
        self._search = search

    async def execute(self, command: SearchChats) -> list[ChatSearchHit]:
        if not 1 <= command.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1 to {MAX_LIMIT}.", field="limit")
        if len(command.q) > MAX_QUERY_LENGTH:
            raise InvalidInput(f"q must be at most {MAX_QUERY_LENGTH} characters.", field="q")
        query = command.q.strip()
        if not query:
            return []
        return await self._search.search(command.user_id, query, limit=command.limit)
