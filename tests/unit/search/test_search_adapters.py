"""``SearxngWebSearch`` and ``BraveWebSearch`` against loopback servers speaking their APIs: the
requests they send, the cleaning of what comes back, and what each kind of failure becomes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support.fake_search import BRAVE_KEY, Answer, FakeSearchServer
from whalli.adapters.outbound_http import new_http_client
from whalli.adapters.search.brave import BraveWebSearch
from whalli.adapters.search.searxng import SearxngWebSearch
from whalli.domain.model.errors import ProviderError, ServiceUnavailable
from whalli.domain.model.searches import SearchHit
from whalli.ports.web_search import WebSearch


@pytest.fixture
def server() -> Iterator[FakeSearchServer]:
    found = FakeSearchServer().start()
    yield found
    found.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = new_http_client(timeout=None, max_connections=10, max_keepalive_connections=10)
    yield client
    await client.aclose()


def searxng(http: httpx.AsyncClient, server: FakeSearchServer) -> SearxngWebSearch:
    return SearxngWebSearch(http, base_url=server.url + "/", timeout_s=5)


def brave(http: httpx.AsyncClient, server: FakeSearchServer, key: str = BRAVE_KEY) -> WebSearch:
    return BraveWebSearch(http, api_key=key, base_url=server.brave_base_url, timeout_s=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_searxng_is_asked_for_json_and_its_results_become_hits(
    http: httpx.AsyncClient, server: FakeSearchServer
) -> None:
    server.hits["pg 18"] = [("https://pg.example/18", "PostgreSQL 18", "Released <b>today</b>.")]

    hits = await searxng(http, server).search("pg 18", limit=5)

    assert hits == [SearchHit(url="https://pg.example/18", title="PostgreSQL 18",
                              snippet="Released today.")]  # fmt: skip
    [request] = server.requests
    assert (request.path, request.params) == ("/search", {"q": "pg 18", "format": "json",
                                                          "pageno": "1"})  # fmt: skip


async def test_brave_sends_its_key_and_count_and_its_strong_marks_are_stripped(
    http: httpx.AsyncClient, server: FakeSearchServer
) -> None:
    hits = await brave(http, server).search("vector search", limit=2)

    assert [h.url for h in hits] == ["https://example.com/vector-search/1",
                                     "https://example.com/vector-search/2"]  # fmt: skip
    assert hits[0].snippet == "About vector search, part 1."
    [request] = server.requests
    assert request.path == "/res/v1/web/search"
    assert request.params == {"q": "vector search", "count": "2"}
    assert request.headers["x-subscription-token"] == BRAVE_KEY
    assert request.headers["accept"] == "application/json"


async def test_only_http_urls_are_kept_and_text_is_cleaned_and_capped(
    http: httpx.AsyncClient, server: FakeSearchServer
) -> None:
    server.hits["q"] = [
        ("javascript:alert(1)", "xss", ""),
        ("data:text/html,<script>", "data", ""),
        ("ftp://files.example/x", "ftp", ""),
        ("https://exa\u202emple.com/x", "bidi", ""),
        ("https:///no-host", "no host", ""),
        ("http://[::1/broken", "bad ipv6", ""),
        (f"https://long.example/{'x' * 3000}", "too long", ""),
        (
            "https://ok.example/a",
            "Ti\x00tle\r\nInjected: yes \u202e",
            "<script>x</script>&amp; " + "y" * 2000,
        ),
        ("HTTP://caps.example/b", "t" * 1000, ""),
    ]

    hits = await searxng(http, server).search("q")

    assert [h.url for h in hits] == ["https://ok.example/a", "HTTP://caps.example/b"]
    assert hits[0].title == "Ti tle Injected: yes"
    assert hits[0].snippet.startswith("x& yyy")
    assert "<" not in hits[0].snippet
    assert len(hits[0].snippet) == 1000
    assert len(hits[1].title) == 300


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_a_rate_limit_or_server_failure_is_unavailable_for_the_queue_to_retry(
    http: httpx.AsyncClient, server: FakeSearchServer, status: int
) -> None:
    server.script(Answer(status, {"error": "busy"}), Answer(status, {"error": "busy"}))

    with pytest.raises(ServiceUnavailable, match=f"searxng answered HTTP {status}"):
        await searxng(http, server).search("q")
    with pytest.raises(ServiceUnavailable, match=f"brave answered HTTP {status}"):
        await brave(http, server).search("q")


async def test_an_unreachable_provider_is_unavailable(http: httpx.AsyncClient) -> None:
    gone = SearxngWebSearch(http, base_url=f"http://127.0.0.1:{_free_port()}", timeout_s=5)

    with pytest.raises(ServiceUnavailable, match="could not be reached"):
        await gone.search("q")


async def test_a_wrong_brave_key_is_refused_without_the_key_in_the_error(
    http: httpx.AsyncClient, server: FakeSearchServer
) -> None:
    key = "BSA-wrong-secret-key-987"
    with pytest.raises(ProviderError, match=r"brave refused the request \(HTTP 401\)") as caught:
        await brave(http, server, key).search("q")

    assert key not in str(caught.value)
    assert key not in repr(caught.value.details)


async def test_a_searxng_without_the_json_format_is_refused_and_the_hint_says_so(
    http: httpx.AsyncClient, server: FakeSearchServer
) -> None:
    server.script(Answer(403, b"<html>Forbidden</html>", {"content-type": "text/html"}))

    with pytest.raises(ProviderError, match="allow the json format"):
        await searxng(http, server).search("q")


async def test_an_answer_that_is_not_a_results_list_is_a_provider_error(
    http: httpx.AsyncClient, server: FakeSearchServer
) -> None:
    page = Answer(200, b"<html>a web page</html>", {"content-type": "text/html"})
    server.script(page, Answer(200, {"results": "nope"}), Answer(200, {"web": {"results": 3}}))

    with pytest.raises(ProviderError, match="answered no JSON"):
        await searxng(http, server).search("q")
    with pytest.raises(ProviderError, match="without a results list"):
        await searxng(http, server).search("q")
    with pytest.raises(ProviderError, match="without a results list"):
        await brave(http, server).search("q")


async def test_a_url_with_userinfo_is_dropped_as_it_reads_as_another_site(
    http: httpx.AsyncClient, server: FakeSearchServer
) -> None:
    server.hits["login"] = [
        ("https://www.paypal.com@evil.example/login", "PayPal", ""),
        ("https://user:secret@files.example/report", "Report", ""),
        ("http://:pw@files.example/", "Empty user", ""),
        ("https://good.example/a@b", "An @ in the path", ""),
        ("https://good.example/?to=x@y.example", "An @ in the query", ""),
    ]

    hits = await searxng(http, server).search("login")

    assert [h.url for h in hits] == [
        "https://good.example/a@b",
        "https://good.example/?to=x@y.example",
    ]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "120"}, 120),
        ({"x-ratelimit-reset": "7, 1419704"}, 7),  # Brave: per second, then per month
        ({"retry-after": "30", "x-ratelimit-reset": "7, 1419704"}, 30),
        ({"x-ratelimit-reset": "soon"}, None),
        ({}, None),
    ],
)
async def test_a_rate_limited_provider_tells_the_queue_how_long_to_wait(
    http: httpx.AsyncClient, server: FakeSearchServer, headers: dict[str, str], wait: int | None
) -> None:
    server.script(*[Answer(429, b"slow down", {"content-type": "text/plain", **headers})] * 2)

    for search in (searxng(http, server), brave(http, server)):
        with pytest.raises(ServiceUnavailable, match="answered HTTP 429") as raised:
            await search.search("q")
        assert raised.value.details.get("retry_after") == wait
