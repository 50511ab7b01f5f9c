"""GET /api/chat/stream served below Litestar (stream_route.py): a stream it opens answers as
the Litestar route did, byte for byte; everything else is handed to the route unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from tests.unit.http.fakes import FakeContainer, FakeProbe
from tests.unit.http.test_access_audit import SESSION_ID, World, audit_container, build_world
from whalli.entrypoints.http.app import create_app
from whalli.entrypoints.http.cors import CorsMiddleware
from whalli.entrypoints.http.middleware import RequestContextMiddleware
from whalli.entrypoints.http.stream_route import STREAM_PATH, StreamRoute

Client = AsyncTestClient[Litestar]


class Seen:
    """Wraps the app below the stream route: which requests reached Litestar."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.paths = app, list[str]()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def stream_route(app: Litestar) -> StreamRoute:
    outer = app.asgi_handler
    assert isinstance(outer, RequestContextMiddleware)
    assert isinstance(outer.app, CorsMiddleware)  # (CORS around the stream route too)
    assert isinstance(outer.app.app, StreamRoute)
    return outer.app.app


@pytest.fixture
def container(probes: list[FakeProbe]) -> FakeContainer:
    return audit_container(probes)


@pytest.fixture
async def world(container: FakeContainer, client: Client) -> World:
    return await build_world(container, client)


@pytest.fixture
def seen(world: World) -> Seen:
    route = stream_route(world.client.app)
    route.app = Seen(route.app)
    assert isinstance(route.app, Seen)
    return route.app


@pytest.fixture
async def litestar_only(container: FakeContainer) -> AsyncIterator[Client]:
    """The same app without the stream route: what Litestar's own route answers."""
    app = create_app(container)
    outer = app.asgi_handler
    assert isinstance(outer, RequestContextMiddleware)
    outer.app = stream_route(app).app
    async with AsyncTestClient(app=app) as client:
        yield client


async def read(client: Client, query: str, headers: dict[str, str] | None = None) -> Any:
    async with client.stream("GET", f"{STREAM_PATH}?{query}", headers=headers or {}) as answer:
        body = b"".join([chunk async for chunk in answer.aiter_raw()])
    return answer, body


def comparable(headers: Any) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers.raw if k.lower() not in (b"date", b"x-request-id")]


async def test_an_open_stream_is_served_below_litestar_as_the_route_served_it(
    world: World, seen: Seen, litestar_only: Client
) -> None:
    for headers in ({}, world.ada.headers, world.vic.headers):
        fast, fast_body = await read(world.client, f"sessionId={SESSION_ID}", headers)
        slow, slow_body = await read(litestar_only, f"sessionId={SESSION_ID}", headers)

        assert (fast.status_code, slow.status_code) == (200, 200)
        assert comparable(fast.headers) == comparable(slow.headers)
        assert fast.headers["x-request-id"]
        assert fast_body == slow_body
        assert b"orchid" in fast_body
        assert b"event: done" in fast_body
    assert STREAM_PATH not in seen.paths
    metrics = (await world.client.get("/api/metrics")).text
    assert 'route="/api/chat/stream",status="200"' in metrics


@pytest.mark.parametrize(
    ("query", "headers", "status"),
    [
        ("sessionId=unknown", {}, 404),
        ("", {}, 400),
        ("sessionId=" + "x" * 257, {}, 400),
        (f"sessionId={SESSION_ID}&sessionId=other", {}, None),
        (f"sessionId={SESSION_ID}", {"Last-Event-ID": "not an id"}, 422),
        (f"sessionId={SESSION_ID}&lastEventId=", {}, 422),
        (f"sessionId={SESSION_ID}", {"Authorization": "Bearer not-a-token"}, 401),
        (f"sessionId={SESSION_ID}", {"Authorization": "Basic eDp5"}, 401),
    ],
)
async def test_anything_but_a_stream_to_open_is_answered_by_the_route(
    world: World, seen: Seen, litestar_only: Client, query: str, headers: dict[str, str],
    status: int | None,
) -> None:  # fmt: skip
    fast, fast_body = await read(world.client, query, headers)
    slow, slow_body = await read(litestar_only, query, headers)

    assert seen.paths == [STREAM_PATH]
    assert fast.status_code == slow.status_code
    if status is not None:
        assert fast.status_code == status
        assert fast.headers["content-type"] == "application/problem+json"
    assert comparable(fast.headers) == comparable(slow.headers)
    assert fast_body.replace(fast.headers["x-request-id"].encode(), b"") == slow_body.replace(
        slow.headers["x-request-id"].encode(), b""
    )


async def test_a_stranger_or_a_resume_after_the_end_is_answered_by_the_route(
    world: World, seen: Seen
) -> None:
    stranger, _ = await read(world.client, f"sessionId={SESSION_ID}", world.sam.headers)
    _, body = await read(world.client, f"sessionId={SESSION_ID}")
    last_id = [line for line in body.split(b"\n") if line.startswith(b"id: ")][-1][4:]
    resumed, resumed_body = await read(
        world.client, f"sessionId={SESSION_ID}", {"Last-Event-ID": last_id.decode()}
    )

    assert stranger.status_code == 404
    assert (resumed.status_code, resumed_body) == (204, b"")
    assert seen.paths == [STREAM_PATH, STREAM_PATH]  # the stranger's and the resume
