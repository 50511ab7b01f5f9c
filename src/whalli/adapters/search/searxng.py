"""SearXNG's JSON search API: ``GET {base}/search?q=…&format=json`` → ``results[]`` with ``url``,
``title`` and ``content``. The natural provider of a self-hosted Whalli (its instance must list
``json`` in ``search.formats`` of its settings.yml, else it answers 403)."""

from __future__ import annotations

from typing import Any

import httpx

from whalli.adapters.search._http import get_json, hit
from whalli.domain.model.errors import ProviderError
from whalli.domain.model.searches import SearchHit
from whalli.ports.web_search import WebSearch

PROVIDER = "searxng"


class SearxngWebSearch(WebSearch):
    def __init__(self, http: httpx.AsyncClient, *, base_url: str, timeout_s: float = 15.0) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + "/search"
        self._timeout_s = timeout_s

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        answer = await get_json(
            self._http, self._url, provider=PROVIDER,
            params={"q": query, "format": "json", "pageno": 1},
            headers={"accept": "application/json"}, timeout_s=self._timeout_s,
        )  # fmt: skip
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise ProviderError(
                "The search provider searxng answered without a results list: check its base URL.",
                provider=PROVIDER, kind="protocol",
            )  # fmt: skip
        return _hits(results, limit)


def _hits(results: list[Any], limit: int) -> list[SearchHit]:
    found: list[SearchHit] = []
    for result in results:
        if len(found) >= limit:
            break
        if isinstance(result, dict):
            kept = hit(result.get("url"), result.get("title"), result.get("content"))
            if kept is not None:
                found.append(kept)
    return found
