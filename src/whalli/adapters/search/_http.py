"""What the search adapters share: one JSON GET with its errors, and the cleaning of results.

A provider's answer is untrusted text shown to users and mailed to them: only http(s) URLs are
kept, and none with userinfo (``https://www.paypal.com@evil.example/`` reads as another site,
``https://user:secret@…`` carries a credential), titles and snippets lose control characters
(bidirectional overrides included) and are capped, and both lose HTML tags (Brave marks the
query's words with ``<strong>``) and entities.
Error messages name the provider and the HTTP status, never what was sent (the key) nor what
came back. A 429 or 503 passes its wait (``Retry-After``, or Brave's ``X-RateLimit-Reset``) on
as ``details["retry_after"]``, which the queue honours. The timeout bounds the whole search,
body included: a provider that trickles its answer is cut, not waited for.
"""

from __future__ import annotations

import asyncio
import html
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from whalli.adapters.ai._http import retry_after
from whalli.domain.model.errors import ProviderError, ServiceUnavailable
from whalli.domain.model.searches import SearchHit

MAX_ANSWER_BYTES = 4 * 1024 * 1024
URL_MAX = 2048
TITLE_MAX = 300
SNIPPET_MAX = 1000
_TAG = re.compile(r"<[^>]*>")
# bidirectional embeddings, overrides and isolates: they can make a URL read as another
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


async def get_json(
    http: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    params: Mapping[str, str | int],
    headers: Mapping[str, str],
    timeout_s: float,
) -> Any:
    """The JSON answer of ``GET url``, all of it within ``timeout_s``. ``ServiceUnavailable``:
    unreachable, too slow, 429 or 5xx (trying again may help; with the provider's wait in
    ``retry_after``); ``ProviderError``: any other non-2xx answer, or no JSON."""
    try:
        async with (
            asyncio.timeout(timeout_s),
            http.stream(
                "GET", url, params=params, headers=headers, timeout=httpx.Timeout(timeout_s)
            ) as response,
        ):
            body = await _prefix(response, MAX_ANSWER_BYTES + 1)
            status, wait = response.status_code, _wait(response.headers)
    except (TimeoutError, httpx.TimeoutException) as e:
        raise _unavailable(provider, "did not answer in time") from e
    except httpx.HTTPError as e:
        raise _unavailable(provider, f"could not be reached ({type(e).__name__})") from e
    if status == 429 or status >= 500:
        raise _unavailable(provider, f"answered HTTP {status}", wait=wait, status=status)
    if not 200 <= status < 300:
        raise ProviderError(
            f"The search provider {provider} refused the request (HTTP {status}){_hint(status)}.",
            provider=provider, kind="refused", upstream_status=status,
        )  # fmt: skip
    if len(body) > MAX_ANSWER_BYTES:
        raise _no_results(provider, "an answer too large")
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise _no_results(provider, "no JSON") from None
    except RecursionError:  # JSON nested deeper than the decoder goes: no results list either
        raise _no_results(provider, "JSON nested too deep") from None


def hit(url: Any, title: Any, snippet: Any) -> SearchHit | None:
    """A result as shown to users, or None when its URL is not a plain http(s) URL."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if len(url) > URL_MAX or _unsafe(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1": an invalid IPv6 host
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if "@" in parts.netloc:  # userinfo: shown, it makes the URL read as another site
        return None
    return SearchHit(
        url=url, title=clean_text(_plain(title), TITLE_MAX),
        snippet=clean_text(_plain(snippet), SNIPPET_MAX),
    )  # fmt: skip


def _plain(text: Any) -> str:
    """A provider's text without HTML tags and entities ("" when it is not a string)."""
    return html.unescape(_TAG.sub("", text)) if isinstance(text, str) else ""


def clean_text(text: str, limit: int) -> str:
    """``text`` without control characters, its whitespace runs one space, at most ``limit``."""
    kept = "".join(" " if _control(c) else c for c in text)
    words = " ".join(kept.split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def _control(char: str) -> bool:
    return char in _BIDI or unicodedata.category(char) == "Cc"


def _unsafe(url: str) -> bool:
    return any(_control(c) or c.isspace() for c in url)


def _hint(status: int) -> str:
    if status in (401, 403):
        return ": check its API key, and for SearXNG that its settings allow the json format"
    if 300 <= status < 400:
        return ": check its base URL"
    return ""


def _wait(headers: httpx.Headers) -> float | None:
    """Seconds the provider asks to wait: ``Retry-After``, else the first window of Brave's
    ``X-RateLimit-Reset`` (per second, then per month: the one that ran out comes first)."""
    wait = retry_after(headers)
    if wait is not None:
        return wait
    first = headers.get("x-ratelimit-reset", "").split(",", 1)[0].strip()
    try:
        seconds = float(first)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _unavailable(
    provider: str, what: str, *, wait: float | None = None, status: int | None = None
) -> ServiceUnavailable:
    details: dict[str, object] = {"provider": provider}
    if status is not None:
        details["upstream_status"] = status
    if wait is not None:
        details["retry_after"] = wait
    return ServiceUnavailable(
        f"The search provider {provider} {what}; try again shortly.", **details
    )


def _no_results(provider: str, what: str) -> ProviderError:
    return ProviderError(
        f"The search provider {provider} answered {what}, not results: check its base URL.",
        provider=provider, kind="protocol",
    )  # fmt: skip


async def _prefix(response: httpx.Response, limit: int) -> bytes:
    read, size = [], 0
    async for chunk in response.aiter_bytes():
        read.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(read)[:limit]
