"""Brave Search API: ``GET {base}/web/search?q=…&count=…`` with the key in
``X-Subscription-Token`` → ``web.results[]`` with ``url``, ``title`` and ``description`` (which
marks the query's words with ``<strong>``, stripped here)."""

from __future__ import annotations

import httpx

from whalli.adapters.search._http import get_json, hit
from whalli.domain.model.errors import ProviderError
from whalli.domain.model.searches import SearchHit
from whalli.ports.web_search import WebSearch

PROVIDER = "brave"
BASE_URL = "https://api.search.brave.com/res/v1"
MAX_COUNT = 20  # Brave's largest page


class BraveWebSearch(WebSearch):
    def __init__(
        self, http: httpx.AsyncClient, *, api_key: str, base_url: str = BASE_URL,
        timeout_s: float = 15.0,
    ) -> None:  # fmt: skip
        self._http = http
        self._url = base_url.rstrip("/") + "/web/search"
        self._headers = {"accept": "application/json", "x-subscription-token": api_key}
        self._timeout_s = timeout_s

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        count = max(1, min(limit, MAX_COUNT))
        answer = await get_json(
            self._http, self._url, provider=PROVIDER, params={"q": query, "count": count},
            headers=self._headers, timeout_s=self._timeout_s,
        )  # fmt: skip
        if not isinstance(answer, dict):
            raise _no_list()
        web = answer.get("web", {"results": []})  # no web results at all: no "web" member
        results = web.get("results") if isinstance(web, dict) else None
        if not isinstance(results, list):
            raise _no_list()
        found: list[SearchHit] = []
        for result in results:
            if len(found) >= limit:
                break
            if isinstance(result, dict):
                kept = hit(result.get("url"), result.get("title"), result.get("description"))
                if kept is not None:
                    found.append(kept)
        return found


def _no_list() -> ProviderError:
    return ProviderError(
        "The search provider brave answered without a results list: check its base URL.",
        provider=PROVIDER, kind="protocol",
    )  # fmt: skip
