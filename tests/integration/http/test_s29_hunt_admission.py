"""Hunt S29: the chat starts' admission gate (entrypoints/http/admission.py, commits 8c87d77 and
92a49a6) on the real app served on loopback, one slot and a long wait
(``WHALLI_CHAT_START_MAX_WAIT_S=10``), so that a slot lost or held too long shows as a wait that
timed out (``whalli_chat_start_waits_total{outcome="timed_out"}``) and as ``gate.held`` left
above 0, without any timing in the tests.

Two defects found: a plain start stopped while it waited for its turn (a shutdown) was counted
under the route ``unmatched`` (its route label was only set inside the gate), and a wait observer
that raised (the metric) took its slot with it for good."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from litestar import Litestar
from prometheus_client import REGISTRY

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_attachments import Files
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import _settings
from tests.integration.http.test_s20_hunt_failures import proxied
from tests.integration.http.test_start_admission import ChatLock, idle_chat, until
from tests.integration.http.test_start_route import api_key, start
from tests.support.live_server import live_server
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.pool import PostgresPool
from whalli.container import build_container
from whalli.entrypoints.http.admission import StartGate
from whalli.entrypoints.http.asgi import build_app
from whalli.entrypoints.http.security import CONTAINER_STATE_KEY

START, REGENERATE = "/api/chat/start", "/api/chat/regenerate"
ONE_SLOT = {"WHALLI_CHAT_START_SLOTS": "1", "WHALLI_CHAT_START_MAX_WAIT_S": "10"}
# below Litestar as JSON or as events, and through Litestar's route (a body of unknown length)
WAYS = ("json", "events", "litestar")
WAIT_S = 30.0  # a bound on a wait, not a speed assertion


def gate_of(app: Litestar | None) -> StartGate:
    assert app is not None
    gate: StartGate = app.state[CONTAINER_STATE_KEY].start_gate
    return gate


def queued(gate: StartGate) -> int:
    """The starts waiting for their turn."""
    return sum(not turn.done() for turn in gate._waiting)


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def waits(outcome: str) -> float:
    return sample("whalli_chat_start_waits_total", {"outcome": outcome})


async def post(chat: Chat, path: str, body: dict[str, Any], auth: dict[str, str], way: str) -> int:
    headers = {**auth, **({"Accept": "text/event-stream"} if way == "events" else {})}
    if way == "litestar":
        raw = json.dumps(body).encode()

        async def chunked() -> AsyncIterator[bytes]:  # no length: not plain, handed over
            yield raw

        headers["Content-Type"] = "application/json"
        sent: dict[str, Any] = {"content": chunked()}
    else:
        sent = {"json": body}
    async with chat.client.stream("POST", path, headers=headers, **sent) as answer:
        await answer.aread()
    return answer.status_code


@pytest.fixture
async def narrow(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    async with chat_app(stack_urls, unique, **ONE_SLOT) as chat:
        yield chat


async def test_a_burst_refused_every_way_inside_the_gate_hands_each_slot_on(narrow: Chat) -> None:
    """Credentials refused after the count (401 inside the gate), plan, model, chat and input
    refusals, regenerations refused: each answers as alone, every waiter gets its turn from
    the one before (none waits out its 10 s), and the slot is free afterwards."""
    chat = narrow
    ada = await chat.world.register("ada")
    first = await chat.start(ada["auth"], **start())
    await chat.events(first["sessionId"])
    key = await api_key(chat, ada["auth"])
    chat_id, nowhere = first["chatId"], str(uuid.uuid4())
    cases: list[tuple[str, dict[str, Any], dict[str, str], int]] = [
        (START, start(), ada["auth"], 201),
        (START, start(), {"X-API-Key": key}, 201),
        (START, start(), {"Authorization": "Bearer whk_not-a-key"}, 401),
        (START, start(model="openai/gpt-4o"), ada["auth"], 403),
        (START, start(model="nobody/none"), ada["auth"], 404),
        (START, start(chatId=nowhere), ada["auth"], 404),
        (START, start(chatId=chat_id, systemPrompt="Be brief."), ada["auth"], 422),
        (REGENERATE, {"chatId": nowhere}, ada["auth"], 404),
        (REGENERATE, {"chatId": chat_id, "model": "nobody/none"}, ada["auth"], 404),
    ]
    timed_out, turns = waits("timed_out"), waits("turn")

    answered = await asyncio.gather(
        *(post(chat, path, body, auth, way) for path, body, auth, _ in cases for way in WAYS)
    )

    assert answered == [status for *_, status in cases for _ in WAYS]
    assert gate_of(chat.app).held == 0
    assert waits("timed_out") == timed_out  # no slot was lost, not even for a while
    assert waits("turn") > turns  # (they did queue)


async def test_a_burst_over_its_budget_is_refused_429_and_gives_the_slot_back(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with chat_app(stack_urls, unique, WHALLI_RATE_LIMIT_USER_PER_MIN="4", **ONE_SLOT) as chat:
        ada = await chat.world.register("ada")
        timed_out = waits("timed_out")

        answered = await asyncio.gather(
            *(post(chat, START, start(), ada["auth"], way) for way in WAYS * 4)
        )

        assert sorted(answered) == [201] * 4 + [429] * 8
        assert gate_of(chat.app).held == 0
        assert waits("timed_out") == timed_out


@pytest.mark.parametrize("service", ["redis", "postgres"])
async def test_starts_while_a_service_is_down_are_refused_and_give_every_slot_back(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, service: str
) -> None:
    """Redis or Postgres cut during a burst of starts and a regeneration: each is a 503, the
    slot comes back (Postgres down, the holders are slow: the waiters time out and go in, and
    the holders leave after them), and once the service is back a start goes through."""
    redis, pg = service == "redis", service == "postgres"
    async with proxied(stack_urls, unique, redis=redis, pg=pg, **ONE_SLOT) as (chat, *cut):
        ada = await chat.world.register("ada")
        first = await chat.start(ada["auth"], **start())
        await chat.events(first["sessionId"])
        [proxy] = [c for c in cut if c is not None]
        proxy.mode = "drop"
        proxy.cut()

        answered = await asyncio.gather(
            *(post(chat, START, start(cache=False), ada["auth"], way) for way in WAYS * 2),
            post(chat, REGENERATE, {"chatId": first["chatId"]}, ada["auth"], "json"),
        )
        proxy.mode = "pass"

        assert answered == [503] * 7
        assert gate_of(chat.app).held == 0
        assert await post(chat, START, start(), ada["auth"], "events") == 201
        assert gate_of(chat.app).held == 0


@pytest.fixture
async def one_slot_app(
    stack_urls: StackUrls, pg_pool: PostgresPool, unique: str
) -> AsyncIterator[tuple[Files, Litestar]]:
    """The app with one slot, served on loopback, with the test's own pool beside it (to lock a
    chat's row: a start into it then holds the slot until the lock is released)."""
    settings = _settings(stack_urls, unique, **ONE_SLOT)
    container = build_container(settings)
    app = build_app(settings, container)
    async with live_server(app) as client:
        yield Files(client, container, pg_pool), app


async def leaving(base: str, auth: dict[str, str], message: str, accept: str) -> None:
    """A whole plain start sent, and the connection dropped at once."""
    url = urlsplit(base)
    _, writer = await asyncio.open_connection(url.hostname, url.port)
    body = json.dumps({"model": "dev/echo", "message": message}).encode()
    head = (
        f"POST {START} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nAuthorization: {auth['Authorization']}\r\n"
        f"Accept: {accept}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    writer.transport.abort()


async def test_starts_whose_clients_left_while_waiting_go_in_their_turn_in_arrival_order(
    one_slot_app: tuple[Files, Litestar],
) -> None:
    """The slot held by a start into a chat another transaction holds locked; behind it two
    starts whose clients left (one asking for events), then one still there. The chat released,
    each goes in its turn
    by arrival (their messages stamped in that order), every wait ends with a turn, and the
    slot is free afterwards; the starts of the clients who left were still made, as without
    the gate."""
    world, app = one_slot_app
    gate = gate_of(app)
    alice = await world.register("alice")
    chat_id = await idle_chat(world.client, alice["auth"], "Summarise")
    lock = await ChatLock(world.pool, chat_id).hold()
    body = {"model": "dev/echo", "message": "again", "chatId": chat_id}
    holder = asyncio.ensure_future(world.client.post(START, json=body, headers=alice["auth"]))
    await until(lambda: gate.held == 1)
    timed_out, turns = waits("timed_out"), waits("turn")
    base = str(world.client.base_url)
    await leaving(base, alice["auth"], "one", "application/json")
    await until(lambda: queued(gate) == 1)
    await leaving(base, alice["auth"], "two", "text/event-stream")
    await until(lambda: queued(gate) == 2)
    last = asyncio.ensure_future(
        world.client.post(
            START, json={"model": "dev/echo", "message": "three"}, headers=alice["auth"]
        )
    )
    await until(lambda: queued(gate) == 3)

    await lock.release()

    assert (await holder).status_code == 201
    assert (await last).status_code == 201
    await until(lambda: gate.held == 0)
    assert (waits("timed_out"), waits("turn")) == (timed_out, turns + 3)
    chats = (await world.client.get("/api/chats", headers=alice["auth"])).json()["items"]
    by_time = sorted(chats, key=lambda c: str(c["createdAt"]))
    assert [c["title"] for c in by_time] == ["Summarise", "one", "two", "three"]


async def test_a_shutdown_ending_starts_in_and_before_the_gate_frees_it_and_counts_their_route(
    stack_urls: StackUrls, pg_pool: PostgresPool, unique: str
) -> None:
    """The server stops (its graceful wait over, it cancels what is left) with one start
    holding the slot and four waiting for it (three plain, one regeneration): nothing is held
    or queued afterwards, and each is counted under its route, as a start stopped inside its
    use case is (a plain start waiting for its turn was counted under ``unmatched``: its route
    label was set only once it went in)."""
    settings = _settings(stack_urls, unique, **ONE_SLOT)
    container = build_container(settings)
    app = build_app(settings, container)
    gate = gate_of(app)

    def ended(route: str) -> float:
        labels = {"method": "POST", "route": route, "status": "500"}
        return sample("whalli_http_requests_total", labels)

    before = {route: ended(route) for route in (START, REGENERATE, "unmatched")}
    async with live_server(app) as client:
        world = Files(client, container, pg_pool)
        alice = await world.register("alice")
        chat_id = await idle_chat(client, alice["auth"], "Summarise")
        lock = await ChatLock(pg_pool, chat_id).hold()
        body = {"model": "dev/echo", "message": "again", "chatId": chat_id}
        sent = [asyncio.ensure_future(client.post(START, json=body, headers=alice["auth"]))]
        await until(lambda: gate.held == 1)
        for n in range(3):
            plain = {"model": "dev/echo", "message": f"waiting {n}"}
            sent.append(
                asyncio.ensure_future(client.post(START, json=plain, headers=alice["auth"]))
            )
            await until(lambda n=n: queued(gate) == n + 1)
        again = {"chatId": str(uuid.uuid4())}
        sent.append(
            asyncio.ensure_future(client.post(REGENERATE, json=again, headers=alice["auth"]))
        )
        await until(lambda: queued(gate) == 4)
    await asyncio.gather(*sent, return_exceptions=True)  # (their connections were closed)
    await lock.release()  # the holder's statement, cancelled, ends once the row is free
    await until(lambda: gate.held == 0)

    assert (gate.held, queued(gate)) == (0, 0)
    assert ended(START) - before[START] == 4
    assert ended(REGENERATE) - before[REGENERATE] == 1
    assert ended("unmatched") == before["unmatched"]


@pytest.mark.parametrize("handed", [True, False], ids=["turn", "timed_out"])
async def test_a_wait_observer_that_fails_neither_fails_the_start_nor_keeps_its_slot(
    handed: bool,
) -> None:
    """The gate's observer (the metric, ``count_chat_start_wait``) raising once a wait is over:
    the start goes on as it would have without the gate, and the slot it was handed comes back
    when it leaves (it was lost for good, the start failing with the observer's error)."""

    def failing(turn: bool) -> None:
        raise OSError("the metrics store is gone")

    gate = StartGate(1, WAIT_S if handed else 0.0, on_wait=failing)
    assert await gate.enter()  # the holder
    waiter = asyncio.ensure_future(gate.enter())
    await asyncio.sleep(0)
    if handed:
        gate.leave()  # the holder leaves: its slot handed to the waiter

    outcome = (await asyncio.gather(waiter, return_exceptions=True))[0]
    if outcome is True:
        gate.leave()  # as its turn leaves
    if not handed:
        gate.leave()  # the holder leaves after the waiter went in without a slot

    assert gate.held == 0
    assert outcome is handed  # in (holding the slot handed over), not failed
    assert await gate.enter() is True
