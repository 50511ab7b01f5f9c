"""A web search that returns configured hits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.searches import SearchHit
from whalli.ports.web_search import WebSearch


class InMemoryWebSearch(WebSearch):
    """Returns the hits configured for the exact query (none for other queries).

    Change them between runs with ``set_hits``; set ``unavailable`` to make searches fail like a
    provider outage. Every query is recorded in ``queries``.
    """

    def __init__(self, hits: Mapping[str, Sequence[SearchHit]] | None = None) -> None:
        self._hits = {query: list(found) for query, found in (hits or {}).items()}
        self.queries: list[str] = []
        self.unavailable = False

    def set_hits(self, query: str, hits: Sequence[SearchHit]) -> None:
        self._hits[query] = list(hits)

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        self.queries.append(query)
        if self.unavailable:
            raise ServiceUnavailable("The search provider is unavailable.")
        return self._hits.get(query, [])[: max(0, limit)]
