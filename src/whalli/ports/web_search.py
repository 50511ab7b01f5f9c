"""A web search API."""

from __future__ import annotations

from typing import Protocol

from whalli.domain.model.searches import SearchHit


class WebSearch(Protocol):
    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        """Top results for ``query``. Raises ``ServiceUnavailable`` on provider failure."""
        ...
