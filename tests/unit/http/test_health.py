from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.fakes import FakeContainer, FakeProbe


async def test_liveness_answers_ok_without_probing_anything(
    client: AsyncTestClient[Litestar], probes: list[FakeProbe]
) -> None:
    for probe in probes:
        probe.state = "down"

    response = await client.get("/api/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_is_200_when_every_service_answers(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.get("/api/health/ready")

    assert response.status_code == 200
    assert response.json() == {"postgres": "ok", "redis": "ok", "s3": "ok"}


async def test_readiness_is_503_naming_the_failed_and_the_hanging_service(
    client: AsyncTestClient[Litestar], probes: list[FakeProbe]
) -> None:
    probes[1].state = "down"
    probes[2].state = "hanging"

    response = await client.get("/api/health/ready")

    assert response.status_code == 503
    assert response.json() == {"postgres": "ok", "redis": "connection refused", "s3": "timeout"}


async def test_readiness_recovers_as_soon_as_the_service_comes_back(
    client: AsyncTestClient[Litestar], probes: list[FakeProbe]
) -> None:
    probes[0].state = "down"
    assert (await client.get("/api/health/ready")).status_code == 503

    probes[0].state = "ok"
    response = await client.get("/api/health/ready")

    assert response.status_code == 200
    assert response.json()["postgres"] == "ok"


async def test_readiness_is_503_while_draining_and_the_rest_is_still_served(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    container.drain.begin()

    ready = await client.get("/api/health/ready")
    live = await client.get("/api/health")

    assert ready.status_code == 503
    assert ready.json() == {"api": "draining: this process is shutting down"}
    assert (live.status_code, live.json()) == (200, {"status": "ok"})


async def test_the_app_opens_and_closes_the_container_resources(
    app: Litestar, container: FakeContainer
) -> None:
    async with AsyncTestClient(app=app) as client:
        await client.get("/api/health")
        assert container.events == ["init"]

    assert container.events == ["init", "shutdown"]


async def test_the_openapi_schema_and_docs_ui_are_served_under_api_docs(
    client: AsyncTestClient[Litestar],
) -> None:
    schema = await client.get("/api/docs/openapi.json")
    ui = await client.get("/api/docs")

    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Whalli API"
    assert "/api/health/ready" in schema.json()["paths"]
    assert "/api/metrics" not in schema.json()["paths"]
    assert ui.status_code == 200
    assert ui.headers["content-type"].startswith("text/html")
