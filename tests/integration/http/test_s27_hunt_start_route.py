"""Hunt S27: POST /api/chat/start served below Litestar (start_route.py, plain_route.py), looked
at as a second way around the app's router and guard. Whatever it answers must be what the
Litestar route answers (``Both`` sends each request with the route on and off); real app,
Postgres, Redis and S3, the provider a fake on loopback. One defect found: a request whose
``Host`` Litestar's router refuses (400, before any route) was served below it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_presets import preset
from tests.integration.http.test_s20_hunt_failures import proxied
from tests.integration.http.test_start_route import (
    EVENTS,
    START_PATH,
    Both,
    api_key,
    comparable_body,
    comparable_headers,
    start,
)
from tests.support.fake_providers import Reply, openai_stream
from whalli.adapters.embedded.stack import StackUrls
from whalli.entrypoints.http.completion_route import COMPLETIONS_PATH

ORIGIN = "http://localhost:3000"  # the test settings' web_url: an allowed origin
WAIT_S = 30.0  # a bound on a wait, not a speed assertion


@pytest.fixture
def both(chat: Chat) -> Both:
    return Both(chat)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(int(WAIT_S / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached within the bound")


async def open_streams(chat: Chat) -> float:
    metrics = (await chat.client.get("/api/metrics")).text
    [line] = [x for x in metrics.splitlines() if x.startswith("whalli_sse_connections_active ")]
    return float(line.rsplit(" ", 1)[1])


@pytest.mark.parametrize("host", ["evil host", "a/b", "x<y>"])
async def test_a_start_whose_host_the_router_refuses_is_refused_as_the_route_refuses_it(
    both: Both, chat: Chat, host: str
) -> None:
    ada = await chat.world.register("ada")

    fast, fast_body, slow, slow_body = await both.post(start(), {**ada["auth"], "Host": host})

    assert fast.status_code == slow.status_code == 400, fast_body
    assert both.seen.paths == [START_PATH]  # left to Litestar's router
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
    chats = await chat.client.get("/api/chats", headers=ada["auth"])
    assert chats.json()["items"] == []  # nothing started


async def test_the_completion_and_the_stream_below_litestar_leave_a_refused_host_to_it(
    chat: Chat,
) -> None:
    ada = await chat.world.register("ada")
    key = await api_key(chat, ada["auth"])
    opened = await chat.start(ada["auth"], **start())
    bad = {"Host": "a/b"}

    completion = await chat.client.post(
        COMPLETIONS_PATH, headers={"X-API-Key": key, **bad},
        json={"model": "dev/echo", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )  # fmt: skip
    stream = await chat.client.get(opened["streamUrl"], headers=bad)

    assert completion.status_code == 400, completion.text
    assert completion.json()["error"]["type"]  # /v1's error shape, as the app answers there
    assert stream.status_code == 400, stream.text
    assert stream.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("accept", [{}, EVENTS])
async def test_a_browsers_start_from_an_allowed_origin_is_answered_as_the_route_answers_it(
    both: Both, chat: Chat, accept: dict[str, str]
) -> None:
    ada = await chat.world.register("ada")
    headers = {**ada["auth"], "Origin": ORIGIN, **accept}

    fast, fast_body, slow, slow_body = await both.post(
        start(message="Hello there abcdef", cache=False), headers
    )

    assert fast.status_code == slow.status_code == 201, fast_body
    assert both.seen.paths == []
    assert fast.headers["access-control-allow-origin"] == ORIGIN
    assert "X-Request-ID" in fast.headers["access-control-expose-headers"]
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)


async def test_the_access_line_of_a_start_is_the_routes_whether_served_or_refused(
    both: Both, chat: Chat
) -> None:
    ada = await chat.world.register("ada")
    for body, status in ((start(), 201), (start(model="openai/gpt-4o"), 403)):
        with capture_logs() as logs:
            fast, _, slow, _ = await both.post(body, ada["auth"])

        assert fast.status_code == slow.status_code == status
        lines = [
            {k: v for k, v in line.items() if k != "duration_ms"}
            for line in logs
            if line.get("event") == "request"
        ]
        assert lines == [
            {"method": "POST", "route": START_PATH, "status": status, "event": "request",
             "log_level": "info"},
        ] * 2  # fmt: skip
    assert both.seen.paths == []


@pytest.mark.parametrize("into", ["project", "preset"])
async def test_a_start_into_a_project_or_by_a_preset_is_answered_as_the_route_answers_it(
    both: Both, chat: Chat, into: str
) -> None:
    ada = await chat.world.register("ada")
    if into == "project":
        made = await chat.client.post("/api/projects", json={"name": "P"}, headers=ada["auth"])
        assert made.status_code == 201, made.text
        body = start(projectId=made.json()["id"])
    else:
        chosen = await preset(chat, ada["auth"], model="dev/echo", systemPrompt="Be brief.")
        body = {"presetId": chosen["id"], "message": "Hello there abcdef"}

    fast, fast_body, slow, slow_body = await both.post(body, ada["auth"])

    assert fast.status_code == slow.status_code == 201, (fast_body, slow_body)
    assert both.seen.paths == []
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
    for answer_body in (fast_body, slow_body):
        chat_id = json.loads(answer_body)["chatId"]
        read = (await chat.client.get(f"/api/chats/{chat_id}", headers=ada["auth"])).json()
        if into == "project":
            assert read["projectId"] == body["projectId"]
        else:
            assert read["systemPrompt"] == "Be brief."


async def test_a_client_leaving_mid_events_leaves_its_reply_to_finish_and_no_stream_open(
    both: Both, chat: Chat
) -> None:
    ada = await chat.world.register("ada")
    gate = asyncio.Event()
    chat.provider.script(Reply(chunks=openai_stream(["Hello", " world"]), gate=gate, gate_after=2))
    before = await open_streams(chat)
    headers = {**ada["auth"], **EVENTS}
    body = start(model="openai/gpt-4o-mini", cache=False)

    got = b""
    async with chat.client.stream("POST", START_PATH, json=body, headers=headers) as answer:
        assert answer.status_code == 201
        async for chunk in answer.aiter_raw():
            got += chunk
            if b"event: token" in got:
                break  # and the client leaves, the reply held at the provider
    gate.set()

    session = json.loads(got.split(b"event: session\ndata: ", 1)[1].split(b"\n", 1)[0])
    url = f"/api/chats/{session['chatId']}"

    async def finished() -> bool:
        messages = (await chat.client.get(url, headers=ada["auth"])).json()["messages"]
        return bool(messages[-1]["status"] == "complete")

    async def closed() -> bool:
        return await open_streams(chat) == before

    await until(finished)
    await until(closed)
    messages = (await chat.client.get(url, headers=ada["auth"])).json()["messages"]
    assert messages[-1]["content"] == "Hello world"
    assert both.seen.paths == []


@pytest.mark.parametrize("accept", [{}, EVENTS])
async def test_a_start_while_redis_is_down_is_refused_as_the_route_refuses_it(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, accept: dict[str, str]
) -> None:
    async with proxied(stack_urls, unique, redis=True) as (chat, _, redis):
        both = Both(chat)
        ada = await chat.world.register("ada")
        assert redis is not None
        redis.mode = "drop"
        redis.cut()

        fast, fast_body, slow, slow_body = await both.post(
            start(cache=False), {**ada["auth"], **accept}
        )
        redis.mode = "pass"

    assert fast.status_code == slow.status_code == 503, fast_body
    assert fast.headers["content-type"] == "application/problem+json"
    assert both.seen.paths == []
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
