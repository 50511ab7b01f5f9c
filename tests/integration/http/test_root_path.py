"""The app served under a root path (``uvicorn --root-path /whalli``: the ASGI server puts the
root path in front of every request's ``path``). The routes served below Litestar (the chat
start, its stream, the streamed ``/v1`` completion) still serve their requests, and every check
of a path against the app's own (``/v1``'s OpenAI error shape) reads it without the root path,
as Litestar's router does. Real app, Postgres, Redis and S3; the provider a fake on loopback."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import pytest
from litestar.types import ASGIApp, Receive, Scope, Send

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_start_route import start_route
from tests.support.oauth_server import CLIENT_ID, CLIENT_SECRET, FakeOAuthServer
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.notifications import Notification
from whalli.domain.services.searches.run_search import results_link
from whalli.entrypoints.http.paths import routed_path

ROOT = "/whalli"


class Reached:
    """Wraps the app below the routes served below Litestar: which paths reached Litestar."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.paths = app, list[str]()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture
async def under_root(chat: Chat) -> AsyncIterator[tuple[httpx.AsyncClient, Reached]]:
    """A client of the chat app as a server with ``--root-path /whalli`` calls it, and what
    reached Litestar through it."""
    assert chat.app is not None
    route = start_route(chat.app)
    reached = Reached(route.app)
    route.app = reached
    transport = httpx.ASGITransport(app=chat.app, root_path=ROOT)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, reached
    finally:
        route.app = reached.app


async def api_key(client: httpx.AsyncClient, auth: dict[str, str], root: str = ROOT) -> str:
    """A new API key of ``auth``'s user, made through ``client`` under ``root``."""
    created = await client.post(f"{root}/api/keys", json={"name": "sdk"}, headers=auth)
    assert created.status_code == 201, created.text
    secret: str = created.json()["secret"]
    return secret


async def search_notification(chat: Chat, user_id: uuid.UUID) -> uuid.UUID:
    """A search-results notification of ``user_id``, stored as a search run stores one (its
    link an API path); the subscription it links to."""
    subscription = uuid.uuid4()
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        await uow.notifications.add(
            Notification(id=uuid.uuid4(), user_id=user_id, kind="search_results",
                         title="3 new results", link=results_link(subscription),
                         created_at=datetime.now(UTC))
        )  # fmt: skip
        await uow.commit()
    return subscription


def test_the_routed_path_drops_the_root_path_as_litestars_router_does() -> None:
    assert routed_path({"path": "/whalli/api/chat/start", "root_path": ROOT}) == "/api/chat/start"
    assert routed_path({"path": "/api/chat/start", "root_path": ROOT}) == "/api/chat/start"
    assert routed_path({"path": "/api/chat/start", "root_path": ""}) == "/api/chat/start"
    assert routed_path({"path": "/v1/models"}) == "/v1/models"
    # routed by Litestar already (its router rewrote the path): read as it is, even when the
    # app's own path holds the root path again
    routed = {"path": "/api/docs", "root_path": "/api", "route_handler": object()}
    assert routed_path(routed) == "/api/docs"
    assert routed_path({"path": "/api/api/docs", "root_path": "/api"}) == "/api/docs"


async def test_a_start_and_its_stream_under_a_root_path_are_served_below_litestar(
    chat: Chat, under_root: tuple[httpx.AsyncClient, Reached]
) -> None:
    client, reached = under_root
    ada = await chat.world.register("ada")
    message = f"Hello under a root {uuid.uuid4().hex[:6]}"
    reached.paths.clear()

    started = await client.post(
        f"{ROOT}/api/chat/start", json={"model": "dev/echo", "message": message},
        headers=ada["auth"],
    )  # fmt: skip
    assert started.status_code == 201, started.text
    session = started.json()["sessionId"]
    assert started.json()["streamUrl"] == f"{ROOT}/api/chat/stream?sessionId={session}"
    streamed = await client.get(started.json()["streamUrl"])  # as EventSource follows it
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"].startswith("text/event-stream")
    deltas = [
        json.loads(line[6:])["delta"]
        for line in streamed.text.splitlines()
        if line.startswith("data: ") and '"delta"' in line
    ]
    assert "".join(deltas) == message
    assert "event: done" in streamed.text
    assert reached.paths == []  # neither reached Litestar


async def test_a_streamed_v1_completion_under_a_root_path_is_served_below_litestar(
    chat: Chat, under_root: tuple[httpx.AsyncClient, Reached]
) -> None:
    client, reached = under_root
    ada = await chat.world.register("ada")
    key = {"Authorization": f"Bearer {await api_key(client, ada['auth'])}"}
    reached.paths.clear()

    body = {
        "model": "dev/echo", "stream": True,
        "messages": [{"role": "user", "content": f"Hi root {uuid.uuid4().hex[:6]}"}],
    }  # fmt: skip
    answer = await client.post(f"{ROOT}/v1/chat/completions", json=body, headers=key)
    assert answer.status_code == 200, answer.text
    assert answer.text.rstrip().endswith("data: [DONE]")
    assert reached.paths == []


async def test_v1_errors_under_a_root_path_keep_openais_error_shape(
    chat: Chat, under_root: tuple[httpx.AsyncClient, Reached]
) -> None:
    client, _ = under_root
    ada = await chat.world.register("ada")
    key = {"Authorization": f"Bearer {await api_key(client, ada['auth'])}"}

    unknown = await client.post(
        f"{ROOT}/v1/chat/completions", headers=key,
        json={"model": "nobody/none", "messages": [{"role": "user", "content": "x"}]},
    )  # fmt: skip
    assert unknown.status_code == 404, unknown.text
    assert unknown.headers["content-type"].startswith("application/json")
    assert set(unknown.json()) == {"error"}
    assert unknown.json()["error"]["code"] == "model_not_found"

    gzipped = await client.post(
        f"{ROOT}/v1/chat/completions", content=b"x",
        headers={**key, "Content-Type": "application/json", "Content-Encoding": "br"},
    )  # fmt: skip
    assert gzipped.status_code == 415, gzipped.text
    assert set(gzipped.json()) == {"error"}

    nowhere = await client.get(f"{ROOT}/v1/nowhere", headers=key)  # refused by the router
    assert nowhere.status_code == 404, nowhere.text
    assert set(nowhere.json()) == {"error"}
    assert (await chat.client.get("/v1/nowhere", headers=key)).json() == nowhere.json()

    api = await client.post(f"{ROOT}/api/chat/start", json={"model": "x"}, headers=ada["auth"])
    assert api.headers["content-type"] == "application/problem+json"  # elsewhere: problems


async def test_links_the_api_answers_under_a_root_path_lead_back_under_it(
    chat: Chat, under_root: tuple[httpx.AsyncClient, Reached]
) -> None:
    client, _ = under_root
    ada = await chat.world.register("ada")
    message = f"Hello linked {uuid.uuid4().hex[:6]}"
    events = await client.post(
        f"{ROOT}/api/chat/start", json={"model": "dev/echo", "message": message},
        headers={**ada["auth"], "Accept": "text/event-stream"},
    )  # fmt: skip
    assert events.status_code == 201, events.text
    session_event = json.loads(events.text.split("event: session\ndata: ", 1)[1].split("\n", 1)[0])
    assert session_event["streamUrl"].startswith(f"{ROOT}/api/chat/stream?sessionId=")
    chat_id = session_event["chatId"]

    regenerated = await client.post(
        f"{ROOT}/api/chat/regenerate", json={"chatId": chat_id}, headers=ada["auth"]
    )
    assert regenerated.status_code == 201, regenerated.text
    assert regenerated.json()["streamUrl"].startswith(f"{ROOT}/api/chat/stream?sessionId=")
    replayed = await client.get(regenerated.json()["streamUrl"])
    assert "event: done" in replayed.text

    shared = await client.post(f"{ROOT}/api/chats/{chat_id}/shares", headers=ada["auth"])
    assert shared.status_code == 201, shared.text
    url = shared.json()["url"]
    assert url == f"{ROOT}/api/shared/{shared.json()['token']}"
    public = await client.get(url)  # no credential: the link is the key
    assert public.status_code == 200, public.text
    assert public.json()["messages"][0]["content"] == message


async def test_a_notifications_link_is_answered_under_the_root_path(
    chat: Chat, under_root: tuple[httpx.AsyncClient, Reached]
) -> None:
    client, _ = under_root
    ada = await chat.world.register("ada")
    subscription = await search_notification(chat, uuid.UUID(ada["user"]["id"]))

    page = await client.get(f"{ROOT}/api/notifications", headers=ada["auth"])
    assert page.status_code == 200, page.text
    [item] = page.json()["items"]
    assert item["link"] == f"{ROOT}/api/searches/{subscription}/results"
    marked = await client.post(f"{ROOT}/api/notifications/{item['id']}/read", headers=ada["auth"])
    assert marked.json()["link"] == item["link"]
    at_the_root = await chat.client.get("/api/notifications", headers=ada["auth"])
    assert at_the_root.json()["items"][0]["link"] == f"/api/searches/{subscription}/results"


async def test_signing_in_with_a_provider_under_a_root_path_keeps_its_browser_binding(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, oauth_server: FakeOAuthServer
) -> None:
    # The callback the provider sends the browser back to is under the root path (the
    # operator's WHALLI_OAUTH_REDIRECT_BASE_URL says so): the binding cookie set at the
    # authorization must be one the browser sends there.
    url = oauth_server.url
    async with chat_app(
        stack_urls, unique,
        WHALLI_GITHUB_CLIENT_ID=CLIENT_ID, WHALLI_GITHUB_CLIENT_SECRET=CLIENT_SECRET,
        WHALLI_GITHUB_AUTHORIZE_URL=f"{url}/login/oauth/authorize",
        WHALLI_GITHUB_TOKEN_URL=f"{url}/login/oauth/access_token", WHALLI_GITHUB_API_URL=url,
        WHALLI_OAUTH_REDIRECT_BASE_URL=f"https://testserver{ROOT}",
    ) as chat:  # fmt: skip
        assert chat.app is not None
        transport = httpx.ASGITransport(app=chat.app, root_path=ROOT)
        browsing = httpx.AsyncClient(transport=transport, base_url="https://testserver")
        async with browsing as browser:  # (https: the cookie is Secure)
            started = await browser.get(f"{ROOT}/api/auth/oauth/github/authorize")
            assert started.status_code == 302, started.text
            assert f"Path={ROOT}/api/auth/oauth" in started.headers["set-cookie"]
            async with httpx.AsyncClient() as provider_page:
                consent = await provider_page.get(started.headers["location"])
            assert consent.status_code == 302, consent.text
            back = urlsplit(consent.headers["location"])
            assert back.path == f"{ROOT}/api/auth/oauth/github/callback"
            # the browser's own cookie jar decides what it sends (by the cookie's path)
            signed_in = await browser.get(f"{back.path}?{back.query}&format=json")
            assert signed_in.status_code == 200, signed_in.text
            assert signed_in.json()["accessToken"]


async def test_the_docs_under_a_root_path_read_their_schema_there_and_say_so(
    chat: Chat, under_root: tuple[httpx.AsyncClient, Reached]
) -> None:
    client, _ = under_root
    page = await client.get(f"{ROOT}/api/docs")
    assert page.status_code == 200, page.text
    assert f'data-url="{ROOT}/api/docs/openapi.json"' in page.text
    schema = await client.get(f"{ROOT}/api/docs/openapi.json")
    assert schema.status_code == 200, schema.text
    assert schema.json()["servers"] == [{"url": ROOT}]
    assert "/api/chat/start" in schema.json()["paths"]  # the paths stay the app's own

    at_the_root = await chat.client.get("/api/docs")
    assert 'data-url="/api/docs/openapi.json"' in at_the_root.text
    assert (await chat.client.get("/api/docs/openapi.json")).json()["servers"] == [{"url": "/"}]
