"""POST /api/chat/start served below Litestar (start_route.py): a plain start answers as the
Litestar route did (JSON, or the reply as events); anything else is handed to the route, which
answers it as before, and every request is counted once. Real app, Postgres, Redis and S3;
the provider is a fake on loopback. Each request is sent twice, with the route below Litestar
and without it (``Both``), and the two answers compared."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.types import ASGIApp, Receive, Scope, Send

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import PASSWORD
from whalli.adapters.embedded.stack import StackUrls
from whalli.entrypoints.http.completion_route import CompletionRoute
from whalli.entrypoints.http.cors import CorsMiddleware
from whalli.entrypoints.http.middleware import RequestContextMiddleware
from whalli.entrypoints.http.plain_route import LEAN_BODY_MAX
from whalli.entrypoints.http.start_route import START_PATH, StartRoute
from whalli.entrypoints.http.stream_route import StreamRoute

EVENTS = {"Accept": "text/event-stream"}


def start_route(app: Litestar) -> StartRoute:
    outer = app.asgi_handler
    assert isinstance(outer, RequestContextMiddleware)
    assert isinstance(outer.app, CorsMiddleware)
    assert isinstance(outer.app.app, StreamRoute)
    completion = outer.app.app.app
    assert isinstance(completion, CompletionRoute)
    assert isinstance(completion.app, StartRoute)
    return completion.app


class Seen:
    """Wraps the app below the start route: which starts reached Litestar."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.paths = app, list[str]()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == START_PATH:
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


class Both:
    """The start route of a served app, switched on and off: ``seen`` holds what reached
    Litestar while it was on."""

    def __init__(self, chat: Chat) -> None:
        assert chat.app is not None
        self.chat, self.route = chat, start_route(chat.app)
        self.seen = Seen(self.route.app)
        self.route.app = self.seen

    async def post(
        self, body: Any, headers: dict[str, str] | list[tuple[str, str]]
    ) -> tuple[httpx.Response, bytes, httpx.Response, bytes]:
        """(answer, body) below Litestar, then (answer, body) by the Litestar route."""
        fast, fast_body = await post(self.chat.client, body, headers)
        self.route.path = "off"  # (no request's path): every request goes to Litestar
        try:
            self.route.app = self.seen.app
            slow, slow_body = await post(self.chat.client, body, headers)
        finally:
            self.route.path, self.route.app = START_PATH, self.seen
        return fast, fast_body, slow, slow_body


@pytest.fixture
def both(chat: Chat) -> Both:
    return Both(chat)


async def api_key(chat: Chat, auth: dict[str, str]) -> str:
    made = await chat.client.post("/api/keys", json={"name": "ci"}, headers=auth)
    assert made.status_code == 201, made.text
    return str(made.json()["secret"])


def comparable_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    varying = (b"date", b"x-request-id", b"ratelimit-remaining", b"ratelimit-reset")
    return [(k, v) for k, v in headers.raw if k.lower() not in varying]


def start(**extra: Any) -> dict[str, Any]:
    return {"model": "dev/echo", "message": f"Hello there {uuid.uuid4().hex[:6]}", **extra}


async def post(
    client: httpx.AsyncClient, body: Any, headers: dict[str, str] | list[tuple[str, str]]
) -> tuple[Any, bytes]:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    async with client.stream("POST", START_PATH, headers=headers, **kwargs) as answer:
        raw = b"".join([chunk async for chunk in answer.aiter_raw()])
    return answer, raw


_UUID = rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def comparable_body(body: bytes, answer: Any) -> bytes:
    """Without what differs between two starts: ids, times, the session and event ids."""
    body = body.replace(answer.headers["x-request-id"].encode(), b"")
    if answer.headers.get("content-type", "").startswith("application/json") and (
        answer.status_code == 201
    ):
        session = json.loads(body)["sessionId"].encode()
        body = body.replace(session, b"SESSION")
    else:
        for found in re.findall(rb'"sessionId":"([^"]+)"', body):
            body = body.replace(found, b"SESSION")
    body = re.sub(_UUID, b"ID", body)
    body = re.sub(rb'"expiresAt":"[^"]+"', b'"expiresAt":"T"', body)
    body = re.sub(rb"Hello there [0-9a-f]{6}", b"Hello there X", body)
    return re.sub(rb"(?m)^id: .*$", b"id: N", body)


async def test_a_plain_start_is_served_below_litestar_as_the_route_served_it(
    both: Both, chat: Chat
) -> None:
    ada = await chat.world.register("ada")
    key = await api_key(chat, ada["auth"])
    for headers in (ada["auth"], {"X-API-Key": key}):
        for body in (start(), start(params={"temperature": 0.5, "stop": ["x"]}, cache=False)):
            fast, fast_body, slow, slow_body = await both.post(body, headers)

            assert (fast.status_code, slow.status_code) == (201, 201), fast_body
            assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
            assert fast.headers["x-request-id"]
            assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
            for answer_body in (fast_body, slow_body):
                opened = json.loads(answer_body)
                assert opened["streamUrl"] == f"/api/chat/stream?sessionId={opened['sessionId']}"
                events = await chat.events(opened["sessionId"])
                assert [event for _, event, _ in events][-1] == "done"
                chat_read = await chat.client.get(f"/api/chats/{opened['chatId']}", headers=headers)
                messages = chat_read.json()["messages"]
                assert [m["role"] for m in messages] == ["user", "assistant"]
                assert messages[0]["content"] == body["message"]
                assert messages[1]["status"] == "complete"
    assert both.seen.paths == []
    metrics = (await chat.client.get("/api/metrics")).text
    assert 'route="/api/chat/start",status="201"' in metrics


@pytest.mark.parametrize(
    "accept",
    [
        [("Accept", "text/event-stream")],
        [("Accept", "application/json, text/event-stream;q=0.5")],
        [("Accept", "application/json"), ("Accept", "text/event-stream")],
        [("Accept", "text/event-stream;q=0")],
    ],
)
async def test_a_start_asking_for_events_is_answered_with_the_reply_as_the_route_answers_it(
    both: Both, chat: Chat, accept: list[tuple[str, str]]
) -> None:
    ada = await chat.world.register("ada")
    headers = [*ada["auth"].items(), *accept]
    fast, fast_body, slow, slow_body = await both.post(
        start(message="Hello there abcdef", cache=False), headers
    )

    assert (fast.status_code, slow.status_code) == (201, 201), fast_body
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
    if accept[-1][1].endswith(";q=0"):
        assert fast.headers["content-type"] == "application/json"
    else:
        assert fast.headers["content-type"].startswith("text/event-stream")
        assert fast_body.startswith(b"retry: 2000\n\nevent: session\n")
        assert b"event: token" in fast_body
        assert b"event: done" in fast_body
    assert both.seen.paths == []


async def test_each_request_is_counted_once_whichever_answers_it(both: Both, chat: Chat) -> None:
    ada = await chat.world.register("ada")
    remaining = []
    bodies = (start(), start(cache="yes"), start(), start(unknown=1), start(model="nobody/x"))
    for body in bodies:
        answer, _ = await post(chat.client, body, ada["auth"])
        remaining.append(int(answer.headers["ratelimit-remaining"]))

    assert both.seen.paths == [START_PATH] * 2  # the two bodies that do not decode strictly
    assert remaining == list(range(remaining[0], remaining[0] - 5, -1))


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (start(cache="true"), "token", 400),
        (start(params={"temperature": "0.5"}), "token", 400),
        (start(misspelt=True), "token", 400),
        ({"model": "dev/echo"}, "token", 422),  # no message, no attachment
        (start(message=""), "token", 400),
        (start(params={"maxTokens": 0}), "token", 400),
        (start(attachmentIds=["x"] * 11), "token", 400),
        (start(chatId="not-a-uuid"), "token", 400),
        (b'{"model": "dev/echo", "message": ', "token", 400),
        (b'["not an object"]', "token", 400),
        (b'{"model": "dev/echo", "message": "\\ud800"}', "token", 400),
        (b'{"model": "dev/echo", "message": "hi", "params": {"temperature": 1e400}}', "token", 400),
        (start(), {}, 401),
        (start(), {"Authorization": "Basic eDp5"}, 401),
        (start(), {"Authorization": "Bearer whk_not-a-key"}, 401),
        (start(), "two", 401),
        (start(), "text", 201),
        (start(message="x" * LEAN_BODY_MAX), "token", 400),
    ],
)
async def test_anything_not_plain_is_answered_by_the_route(
    both: Both, chat: Chat, body: Any, headers: Any, status: int
) -> None:
    ada = await chat.world.register("ada")
    sent = (
        {
            "token": ada["auth"],
            "two": {**ada["auth"], "X-API-Key": await api_key(chat, ada["auth"])},
            "text": {**ada["auth"], "Content-Type": "text/plain"},
        }[headers]
        if isinstance(headers, str)
        else headers
    )
    if headers == "text":
        body = b'{"model": "dev/echo", "message": "Hello there abcdef"}'
    fast, fast_body, slow, slow_body = await both.post(body, sent)

    # a credential refused after the count is answered here, as the guard answers it
    refused_here = sent == {"Authorization": "Bearer whk_not-a-key"}
    assert both.seen.paths == ([] if refused_here else [START_PATH])
    assert fast.status_code == slow.status_code == status, fast_body
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (start(model="openai/gpt-4o"), 403),  # above the caller's plan (free)
        (start(model="nobody/none"), 404),
        (start(chatId=str(uuid.uuid4())), 404),
        (start(presetId=str(uuid.uuid4()), model=None), 404),
        (start(attachmentIds=[str(uuid.uuid4())]), 404),
        (start(projectId=str(uuid.uuid4())), 404),
        (start(chatId=str(uuid.uuid4()), systemPrompt="Be brief."), 422),
    ],
)
async def test_a_refusal_after_the_count_is_answered_here_as_the_route_answers_it(
    both: Both, chat: Chat, body: Any, status: int
) -> None:
    ada = await chat.world.register("ada")
    fast, fast_body, slow, slow_body = await both.post(body, ada["auth"])

    assert both.seen.paths == []
    assert fast.status_code == slow.status_code == status, fast_body
    assert fast.headers["content-type"] == "application/problem+json"
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
    chats = await chat.client.get("/api/chats", headers=ada["auth"])
    assert chats.json()["items"] == []  # nothing written for either


async def test_a_spent_budget_is_refused_as_the_route_refuses_it(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with chat_app(stack_urls, unique, WHALLI_RATE_LIMIT_USER_PER_MIN="3") as chat:
        both = Both(chat)
        ada = await chat.world.register("ada")
        for _ in range(3):
            await chat.client.get("/api/auth/me", headers=ada["auth"])

        fast, fast_body, slow, slow_body = await both.post(start(), ada["auth"])

        assert both.seen.paths == []
        assert fast.status_code == slow.status_code == 429
        assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
        assert fast.headers["retry-after"]
        assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)


async def test_an_access_token_that_ended_is_refused_here_as_the_route_refuses_it_counted_once(
    both: Both, chat: Chat
) -> None:
    ada = await chat.world.register("ada")
    login = await chat.client.post(
        "/api/auth/login", json={"email": ada["email"], "password": PASSWORD}
    )
    tokens = login.json()
    out = await chat.client.post("/api/auth/logout", json={"refreshToken": tokens["refreshToken"]})
    assert out.status_code == 204, out.text
    ended = {"Authorization": f"Bearer {tokens['accessToken']}"}
    before = await chat.client.get("/api/auth/me", headers=ada["auth"])

    fast, fast_body, slow, slow_body = await both.post(start(), ended)

    assert both.seen.paths == []  # refused after the count: answered here, as the guard does
    assert fast.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert fast.status_code == slow.status_code == 401
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
    ip_spent = int(fast.headers["ratelimit-remaining"]) - int(slow.headers["ratelimit-remaining"])
    assert ip_spent == 1
    after = await chat.client.get("/api/auth/me", headers=ada["auth"])
    # the user's budget: only the two reads (the ended token's counts given back)
    assert (
        int(before.headers["ratelimit-remaining"]) - int(after.headers["ratelimit-remaining"]) == 1
    )


async def test_a_start_into_a_chat_of_the_caller_goes_on_in_it(both: Both, chat: Chat) -> None:
    ada = await chat.world.register("ada")
    first = await chat.start(ada["auth"], **start())
    await chat.events(first["sessionId"])
    second = await chat.start(ada["auth"], **start(chatId=first["chatId"]))
    await chat.events(second["sessionId"])

    assert second["chatId"] == first["chatId"]
    read = await chat.client.get(f"/api/chats/{first['chatId']}", headers=ada["auth"])
    roles = [m["role"] for m in read.json()["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert both.seen.paths == []
