from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import CONTENT_TYPE_LATEST

from tests.unit.http.fakes import FakeContainer, FakeProbe
from whalli.config import Secret, Settings
from whalli.entrypoints.http.app import create_app


async def test_metrics_count_requests_by_route_template_not_raw_path(
    client: AsyncTestClient[Litestar],
) -> None:
    await client.get("/api/test/items/7")
    await client.get("/api/test/items/8")
    await client.get("/api/definitely/not/here")

    text = (await client.get("/api/metrics")).text

    assert 'route="/api/test/items/{item_id:int}"' in text
    assert (
        'whalli_http_requests_total{method="GET",route="/api/test/items/{item_id:int}",status="200"}'
        in text
    )
    assert 'route="unmatched",status="404"' in text
    assert "/api/test/items/7" not in text
    assert "/api/definitely/not/here" not in text
    assert "whalli_http_request_duration_seconds_bucket" in text
    assert "whalli_http_requests_in_flight" in text


async def test_the_metrics_response_is_prometheus_text(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/api/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE whalli_http_requests_total counter" in response.text


async def test_the_metrics_content_type_is_prometheus_clients_own_with_one_charset(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/metrics")

    # Prometheus 3 fails a scrape whose Content-Type repeats a parameter
    assert response.headers.get_list("content-type") == [CONTENT_TYPE_LATEST]
    assert response.headers["content-type"].count("charset=") == 1


async def test_metrics_require_the_bearer_token_when_one_is_configured() -> None:
    container = FakeContainer(Settings(metrics_token=Secret("scrape-me")), [FakeProbe("redis")])
    async with AsyncTestClient(app=create_app(container)) as client:
        missing = await client.get("/api/metrics")
        wrong = await client.get("/api/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/api/metrics", headers={"Authorization": "Bearer scrape-me"})

    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert "scrape-me" not in wrong.text
    assert right.status_code == 200
    assert "whalli_http_requests_total" in right.text
