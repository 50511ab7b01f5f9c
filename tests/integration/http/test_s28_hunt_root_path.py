"""Hunt (s28): the app served under a root path as an operator deploys it: a real uvicorn with
``root_path`` (what ``whalli serve`` passes from ``WHALLI_ROOT_PATH``, or ``uvicorn
--root-path``) behind a reverse proxy that mounts it below a prefix and strips it (Traefik's
StripPrefix), called as a browser, the official ``openai`` SDK and a generated client do.
Real app, Postgres, Redis and S3; the AI provider a fake on loopback."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import pytest

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_flow import Chat, _read_events
from tests.integration.http.test_root_path import Reached, api_key, search_notification
from tests.integration.http.test_start_route import start_route
from tests.support.live_server import serving
from whalli.adapters.embedded.stack import StackUrls

ROOT = "/whalli"
PROXY = "http://proxy.test"  # the host the clients call: the proxy's


class StripPrefix(httpx.AsyncBaseTransport):
    """The reverse proxy in front: it mounts the API below ``prefix``, strips it from each
    request and passes the rest (its Host header too) to ``upstream``. It answers nothing
    outside the prefix: a link that leads there is a test failure."""

    def __init__(self, prefix: str, upstream: str) -> None:
        self.prefix, self.upstream = prefix, httpx.URL(upstream)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw = request.url.raw_path
        prefix = self.prefix.encode()
        if request.url.host != "proxy.test" or not (
            raw == prefix or raw.startswith(prefix + b"/") or raw.startswith(prefix + b"?")
        ):
            raise AssertionError(f"the proxy mounts nothing at {request.url}")
        rest = raw[len(prefix) :]
        request.url = self.upstream.copy_with(raw_path=rest if rest[:1] == b"/" else b"/" + rest)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def behind_proxy(
    chat: Chat, root_path: str = ROOT, prefix: str = ROOT
) -> AsyncIterator[httpx.AsyncClient]:
    """The chat app served by uvicorn with ``root_path``, and a client of the proxy that strips
    ``prefix`` in front."""
    assert chat.app is not None
    # (lifespan off: the ``chat`` app's own server ran it already)
    async with (
        serving(chat.app, root_path=root_path, lifespan="off") as url,
        httpx.AsyncClient(
            transport=StripPrefix(prefix, url), base_url=PROXY, timeout=httpx.Timeout(30.0)
        ) as client,
    ):
        yield client


async def test_a_problems_instance_under_a_root_path_is_the_path_the_client_called(
    chat: Chat,
) -> None:
    # RFC 9457 3.1.5: ``instance`` is a URI reference, resolved against the request's URL; a
    # path without the root path leads to the host's root, where the proxy answers nothing.
    # Every layer that answers a problem must say the same path for the same request.
    ada = await chat.world.register("ada")
    async with behind_proxy(chat) as client:
        missing = uuid.uuid4()
        routed = await client.get(f"{ROOT}/api/chats/{missing}", headers=ada["auth"])
        assert routed.status_code == 404, routed.text
        assert routed.json()["instance"] == f"{ROOT}/api/chats/{missing}"  # through Litestar

        body = json.dumps({"model": "nobody/none", "message": "hi"}).encode()
        headers = {**ada["auth"], "Content-Type": "application/json"}
        below = await client.post(f"{ROOT}/api/chat/start", content=body, headers=headers)

        async def chunked() -> AsyncIterator[bytes]:  # not the plain case: Litestar's route
            yield body

        through = await client.post(f"{ROOT}/api/chat/start", content=chunked(), headers=headers)
        assert below.status_code == through.status_code == 404, (below.text, through.text)
        answers = [below.json(), through.json()]
        for answer in answers:
            del answer["requestId"]
        assert answers[0] == answers[1]  # the start below Litestar answers as its route
        assert answers[0]["instance"] == f"{ROOT}/api/chat/start"

        nowhere = await client.get(f"{ROOT}/api/nowhere")  # refused by the router
        assert nowhere.json()["instance"] == f"{ROOT}/api/nowhere"
        brotli = await client.post(  # refused by the request middleware, before any route
            f"{ROOT}/api/chat/start", content=b"x", headers={**headers, "Content-Encoding": "br"}
        )
        assert brotli.status_code == 415, brotli.text
        assert brotli.json()["instance"] == f"{ROOT}/api/chat/start"

    at_the_root = await chat.client.get(f"/api/chats/{missing}", headers=ada["auth"])
    assert at_the_root.json()["instance"] == f"/api/chats/{missing}"


async def test_a_root_path_with_a_trailing_slash_reads_paths_as_the_router_does(
    chat: Chat,
) -> None:
    # A server that passes the path as the client sent it (httpx's ASGITransport, as the
    # existing root-path tests use it) with ``root_path="/whalli/"``: Litestar's router reads
    # ``/whalli/v1/nowhere`` as ``/v1/nowhere`` (it adds the leading slash back); every other
    # reading of the path must too, or the routes below Litestar never serve, /v1 loses
    # OpenAI's error shape and a problem's instance is ``/whalliv1/...``.
    assert chat.app is not None
    ada = await chat.world.register("ada")
    key = {"Authorization": f"Bearer {await api_key(chat.client, ada['auth'], '')}"}
    route = start_route(chat.app)
    reached = route.app = Reached(route.app)
    transport = httpx.ASGITransport(app=chat.app, root_path=f"{ROOT}/")
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            nowhere = await client.get(f"{ROOT}/v1/nowhere", headers=key)  # the router's 404
            assert nowhere.status_code == 404, nowhere.text
            assert set(nowhere.json()) == {"error"}, nowhere.text
            brotli = await client.post(  # refused by the request middleware
                f"{ROOT}/v1/chat/completions", content=b"x",
                headers={**key, "Content-Type": "application/json", "Content-Encoding": "br"},
            )  # fmt: skip
            assert set(brotli.json()) == {"error"}, brotli.text
            unknown = await client.get(f"{ROOT}/api/nowhere")
            assert unknown.json()["instance"] == f"{ROOT}/api/nowhere"

            reached.paths.clear()
            started = await client.post(
                f"{ROOT}/api/chat/start", json={"model": "dev/echo", "message": "hi"},
                headers=ada["auth"],
            )  # fmt: skip
            assert started.status_code == 201, started.text
            assert started.json()["streamUrl"].startswith(f"{ROOT}/api/chat/stream?")
            streamed = await client.get(started.json()["streamUrl"])
            assert "event: done" in streamed.text
            assert reached.paths == []  # both served below Litestar, as under ``/whalli``
    finally:
        route.app = reached.app


OAUTH_ENV = {
    "WHALLI_GITHUB_CLIENT_ID": "client-id",
    "WHALLI_GITHUB_CLIENT_SECRET": "client-secret",
    "WHALLI_GITHUB_AUTHORIZE_URL": "http://127.0.0.1:9/login/oauth/authorize",
    "WHALLI_GITHUB_TOKEN_URL": "http://127.0.0.1:9/login/oauth/access_token",
    "WHALLI_GITHUB_API_URL": "http://127.0.0.1:9",
}


@pytest.mark.parametrize(("root_path", "prefix"), [("/whalli/", "/whalli"), ("/", "")])
async def test_a_root_path_the_server_gives_with_a_trailing_slash_makes_links_of_one_slash(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, root_path: str, prefix: str
) -> None:
    # ``uvicorn --root-path /whalli/`` (or ``/``) serves the same paths as ``/whalli`` (or
    # none): the links must be the same too. ``/whalli//api/...`` is another path to a proxy
    # and to a cookie's Path; ``//api/chat/stream`` is a URL of the host ``api``.
    async with chat_app(
        stack_urls, unique, WHALLI_OAUTH_REDIRECT_BASE_URL=f"https://proxy.test{prefix}",
        **OAUTH_ENV,
    ) as chat:  # fmt: skip
        ada = await chat.world.register("ada")
        subscription = await search_notification(chat, uuid.UUID(ada["user"]["id"]))
        async with behind_proxy(chat, root_path, prefix) as client:
            started = await client.post(
                f"{prefix}/api/chat/start", json={"model": "dev/echo", "message": "hello"},
                headers=ada["auth"],
            )  # fmt: skip
            assert started.status_code == 201, started.text
            session = started.json()["sessionId"]
            assert started.json()["streamUrl"] == f"{prefix}/api/chat/stream?sessionId={session}"
            streamed = await client.get(started.json()["streamUrl"])
            assert "event: done" in streamed.text

            chat_id = started.json()["chatId"]
            shared = await client.post(f"{prefix}/api/chats/{chat_id}/shares", headers=ada["auth"])
            assert shared.json()["url"] == f"{prefix}/api/shared/{shared.json()['token']}"

            page = await client.get(f"{prefix}/api/notifications", headers=ada["auth"])
            [item] = page.json()["items"]
            assert item["link"] == f"{prefix}/api/searches/{subscription}/results"

            docs = await client.get(f"{prefix}/api/docs")
            assert f'data-url="{prefix}/api/docs/openapi.json"' in docs.text
            schema = await client.get(f"{prefix}/api/docs/openapi.json")
            assert schema.json()["servers"] == [{"url": prefix or "/"}]

            authorize = await client.get(f"{prefix}/api/auth/oauth/github/authorize")
            assert authorize.status_code == 302, authorize.text
            assert f"Path={prefix}/api/auth/oauth;" in authorize.headers["set-cookie"]


@pytest.mark.parametrize(("root_path", "prefix"), [("/whalli/", "/whalli"), ("/", "")])
async def test_a_validation_error_under_a_root_path_with_a_trailing_slash_names_the_called_path(
    chat: Chat, root_path: str, prefix: str
) -> None:
    # Litestar names the request by its URL, which joins ``/whalli/`` and ``/api/...`` with
    # two slashes: the detail must name the path the client called, as ``instance`` does.
    ada = await chat.world.register("ada")
    async with behind_proxy(chat, root_path, prefix) as client:
        query = await client.get(f"{prefix}/api/chats?limit=many", headers=ada["auth"])
        assert query.status_code == 400, query.text
        assert query.json()["detail"] == f"Validation failed for GET {prefix}/api/chats?limit=many"
        assert query.json()["instance"] == f"{prefix}/api/chats"

        body = await client.post(  # a number as a string: refused by the strict body check
            f"{prefix}/api/chat/start", headers=ada["auth"],
            json={"model": "dev/echo", "message": "hi", "params": {"temperature": "0.5"}},
        )  # fmt: skip
        assert body.status_code == 400, body.text
        assert body.json()["detail"] == f"Validation failed for POST {prefix}/api/chat/start"
        assert body.json()["errors"][0]["key"] == "params.temperature"

        key = {"Authorization": f"Bearer {await api_key(chat.client, ada['auth'], '')}"}
        v1 = await client.post(  # /v1 says it in OpenAI's error shape
            f"{prefix}/v1/chat/completions", headers=key,
            json={"model": "dev/echo", "messages": "hi"},
        )  # fmt: skip
        assert v1.status_code == 400, v1.text
        message = v1.json()["error"]["message"]
        assert message.startswith(f"Validation failed for POST {prefix}/v1/chat/completions:")


async def test_the_openai_sdk_with_a_base_url_under_the_root_path(chat: Chat) -> None:
    # Pins what no test covered: the SDK's own requests (its paths, its error parsing) through
    # a proxy with the root path, streamed (below Litestar) and not (through it).
    ada = await chat.world.register("ada")
    async with behind_proxy(chat) as client:
        secret = await api_key(client, ada["auth"])
        sdk = openai.AsyncOpenAI(
            base_url=f"{PROXY}{ROOT}/v1", api_key=secret, max_retries=0, http_client=client
        )
        models = [m.id async for m in sdk.models.list()]
        assert "dev/echo" in models
        prompt = f"Hi under a root {uuid.uuid4().hex[:6]}"
        messages: Any = [{"role": "user", "content": prompt}]
        completion = await sdk.chat.completions.create(model="dev/echo", messages=messages)
        assert completion.choices[0].message.content == prompt
        stream = await sdk.chat.completions.create(model="dev/echo", messages=messages, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == prompt
        for streamed in (False, True):
            with pytest.raises(openai.NotFoundError, match="nobody/none") as refused:
                await sdk.chat.completions.create(
                    model="nobody/none", messages=messages, stream=streamed
                )
            assert refused.value.code == "model_not_found"


async def test_an_event_source_resumes_through_the_stream_url_under_the_root_path(
    chat: Chat,
) -> None:
    # Pins what no test covered: EventSource reconnects to the very streamUrl it was given,
    # with Last-Event-ID; after the final event the route's 204 tells it to stop.
    ada = await chat.world.register("ada")
    message = f"Resume under a root {uuid.uuid4().hex[:6]}"
    async with behind_proxy(chat) as client:
        started = await client.post(
            f"{ROOT}/api/chat/start", json={"model": "dev/echo", "message": message},
            headers=ada["auth"],
        )  # fmt: skip
        url = started.json()["streamUrl"]
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            events = await _read_events(response, None)
        assert events[-1][1] == "done"
        first = events[0][0]
        assert first is not None
        async with client.stream("GET", url, headers={"Last-Event-ID": first}) as response:
            assert response.status_code == 200
            resumed = await _read_events(response, None)
        assert resumed == events[1:]
        last = events[-1][0]
        assert last is not None
        ended = await client.get(url, headers={"Last-Event-ID": last})
        assert ended.status_code == 204, ended.text


async def test_the_docs_under_a_root_path_stay_exempt_from_the_rate_limit(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        chat_app(
            stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="2", WHALLI_TRUSTED_PROXIES="127.0.0.1"
        ) as chat,
        behind_proxy(chat) as client,
    ):
        # the client's own address, as the proxy says it (the limit's Redis is shared)
        client.headers["X-Forwarded-For"] = ".".join(["10", *map(str, bytes.fromhex(unique)[:3])])
        for _ in range(3):
            for path in ("/api/docs", "/api/docs/openapi.json"):
                docs = await client.get(f"{ROOT}{path}")
                assert docs.status_code == 200, docs.text
                assert "ratelimit-remaining" not in docs.headers
        counted = [(await client.get(f"{ROOT}/api/shared/none")).status_code for _ in range(3)]
        assert counted == [404, 404, 429]  # (the limit is on: anonymous requests are counted)
