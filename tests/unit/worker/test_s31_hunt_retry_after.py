"""Hunt (s31): a search provider's rate limit asking for an absurd wait (``Retry-After: 1e308``,
or Brave's ``X-RateLimit-Reset``) is a finite number of seconds, so the adapter passes it on;
the worker's actor must still retry the job after at most an hour, not fail on the arithmetic
(``math.ceil(inf)``: ``OverflowError``) and fall back to the queue's short backoff."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import dramatiq
import httpx
import pytest

from tests.support.fake_search import Answer, FakeSearchServer
from tests.unit.worker.test_actors import run
from whalli.adapters.outbound_http import new_http_client
from whalli.adapters.search.searxng import SearxngWebSearch
from whalli.domain.model.errors import ServiceUnavailable
from whalli.entrypoints.worker.actors import MAX_RETRY_AFTER_MS


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


@pytest.mark.parametrize("header", ["retry-after", "x-ratelimit-reset"])
async def test_a_provider_asking_to_wait_near_forever_is_retried_after_at_most_an_hour(
    http: httpx.AsyncClient, server: FakeSearchServer, header: str
) -> None:
    server.script(Answer(429, b"slow down", {"content-type": "text/plain", header: "1e308"}))
    search = SearxngWebSearch(http, base_url=server.url, timeout_s=5)
    with pytest.raises(ServiceUnavailable, match="answered HTTP 429") as limited:
        await search.search("q")

    with pytest.raises(dramatiq.Retry, match="service_unavailable") as caught:
        await run(limited.value, min_retry_delay_ms=100)

    assert caught.value.delay == MAX_RETRY_AFTER_MS
