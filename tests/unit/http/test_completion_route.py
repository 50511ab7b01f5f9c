"""A streamed POST /v1/chat/completions served below Litestar (completion_route.py): a plain one
answers as the Litestar route did; anything else is handed to the route, which answers it as
before, and every request is counted once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from tests.unit.http.accounts import seed_caller
from tests.unit.http.fakes import FakeContainer
from whalli.entrypoints.http.app import create_app
from whalli.entrypoints.http.completion_route import COMPLETIONS_PATH, CompletionRoute
from whalli.entrypoints.http.cors import CorsMiddleware
from whalli.entrypoints.http.middleware import RequestContextMiddleware
from whalli.entrypoints.http.plain_route import LEAN_BODY_MAX
from whalli.entrypoints.http.stream_route import StreamRoute

Client = AsyncTestClient[Litestar]


class Seen:
    """Wraps the app below the completion route: which requests reached Litestar."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.paths = app, list[str]()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


def completion_route(app: Litestar) -> tuple[StreamRoute, CompletionRoute]:
    outer = app.asgi_handler
    assert isinstance(outer, RequestContextMiddleware)
    assert isinstance(outer.app, CorsMiddleware)
    stream = outer.app.app
    assert isinstance(stream, StreamRoute)
    assert isinstance(stream.app, CompletionRoute)
    return stream, stream.app


@pytest.fixture
def seen(client: Client) -> Seen:
    _, route = completion_route(client.app)
    route.app = Seen(route.app)
    assert isinstance(route.app, Seen)
    return route.app


@pytest.fixture
async def litestar_only(container: FakeContainer) -> AsyncIterator[Client]:
    """The same app without the completion route: what Litestar's own route answers."""
    app = create_app(container)
    stream, route = completion_route(app)
    stream.app = route.app
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.fixture
async def key(container: FakeContainer, client: Client) -> str:
    caller = await seed_caller(container, client, "ada")
    return str(caller.headers["X-API-Key"])


def chat(**extra: Any) -> dict[str, Any]:
    return {
        "model": "dev/echo", "messages": [{"role": "user", "content": "Hello there"}],
        "stream": True, **extra,
    }  # fmt: skip


async def post(client: Client, body: Any, headers: dict[str, str]) -> tuple[Any, bytes]:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    async with client.stream("POST", COMPLETIONS_PATH, headers=headers, **kwargs) as answer:
        raw = b"".join([chunk async for chunk in answer.aiter_raw()])
    return answer, raw


def comparable_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    varying = (b"date", b"x-request-id", b"ratelimit-remaining", b"ratelimit-reset")
    return [(k, v) for k, v in headers.raw if k.lower() not in varying]


def comparable_body(body: bytes, answer: Any) -> bytes:
    body = body.replace(answer.headers["x-request-id"].encode(), b"")
    body = re.sub(rb"chatcmpl-[0-9a-f]{32}", b"chatcmpl-ID", body)
    return re.sub(rb'"created":\d+', b'"created":0', body)


async def test_a_plain_stream_is_served_below_litestar_as_the_route_served_it(
    client: Client, litestar_only: Client, seen: Seen, key: str
) -> None:
    for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
        for body in (chat(), chat(stream_options={"include_usage": True}, temperature=0)):
            fast, fast_body = await post(client, body, headers)
            slow, slow_body = await post(litestar_only, body, headers)

            assert (fast.status_code, slow.status_code) == (200, 200)
            assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
            assert fast.headers["x-request-id"]
            assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
            assert b'"content":"Hello' in fast_body
            assert fast_body.endswith(b"data: [DONE]\n\n")
    assert COMPLETIONS_PATH not in seen.paths
    metrics = (await client.get("/api/metrics")).text
    assert 'route="/v1/chat/completions",status="200"' in metrics


async def test_each_request_is_counted_once_whichever_answers_it(
    client: Client, seen: Seen, key: str
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    remaining = []
    for body in (chat(), chat(stream=False), chat(), chat(n=2), chat()):
        answer, _ = await post(client, body, headers)
        remaining.append(int(answer.headers["ratelimit-remaining"]))

    assert seen.paths == [COMPLETIONS_PATH] * 2  # the whole completion and the refused n=2
    assert remaining == list(range(remaining[0], remaining[0] - 5, -1))


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (chat(stream=False), "key", 200),
        (chat(n=2), "key", 400),
        (chat(temperature="0.5"), "key", 400),
        (chat(functions=[{"name": "f"}]), "key", 400),
        (b'{"model": "dev/echo", "messages": [', "key", 400),
        (b'["not an object"]', "key", 400),
        ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "key", 400),
        (chat(), {}, 401),
        (chat(), {"Authorization": "Basic eDp5"}, 401),
        (chat(), {"Authorization": "Bearer whk_not-a-key"}, 401),
        (chat(), "two", 401),
        (chat(), "text", 200),
        (chat(messages=[{"role": "user", "content": "x" * LEAN_BODY_MAX}]), "key", 200),
    ],
)
async def test_anything_not_plain_is_answered_by_the_route(
    client: Client, litestar_only: Client, seen: Seen, key: str, body: Any, headers: Any,
    status: int,
) -> None:  # fmt: skip
    sent = (
        {
            "key": {"Authorization": f"Bearer {key}"},
            "two": {"Authorization": f"Bearer {key}", "X-API-Key": key},
            "text": {"Authorization": f"Bearer {key}", "Content-Type": "text/plain"},
        }.get(headers, headers)
        if isinstance(headers, str)
        else headers
    )
    if headers == "text":
        body = b'{"model": "dev/echo", "messages": [{"role": "user", "content": "Hi"}], '
        body += b'"stream": true}'
    fast, fast_body = await post(client, body, sent)
    slow, slow_body = await post(litestar_only, body, sent)

    # a credential refused after the count is answered here, as the guard answers it
    refused_here = sent == {"Authorization": "Bearer whk_not-a-key"}
    assert seen.paths == ([] if refused_here else [COMPLETIONS_PATH])
    assert fast.status_code == slow.status_code == status
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (chat(model="openai/gpt-4o"), 403),  # above the caller's plan (free)
        (chat(model="nobody/none"), 404),
    ],
)
async def test_a_refusal_after_the_count_is_answered_here_as_the_route_answers_it(
    client: Client, litestar_only: Client, seen: Seen, key: str, body: Any, status: int,
    container: FakeContainer,
) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"}
    fast, fast_body = await post(client, body, headers)
    slow, slow_body = await post(litestar_only, body, headers)

    assert seen.paths == []
    assert fast.status_code == slow.status_code == status, fast_body
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
