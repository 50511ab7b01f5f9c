"""A web search API."""

from __future__ import annotations

from typing import Protocol

from whalli.domain.model.searches import SearchHit


class WebSearch(Protocol):
    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        """Top results for ``query`` (at most ``limit``), http(s) URLs only, titles and snippets
        plain text. Raises ``ServiceUnavailable`` when trying again later may help (the provider
        unreachable, too slow, rate limiting or failing: 429, 5xx) and ``ProviderError`` when it
        refused the request (another 4xx: a bad key, a bad query) or answered no results list."""
        ...
