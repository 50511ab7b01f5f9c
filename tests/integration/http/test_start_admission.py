"""Chat starts through one admission slot (``WHALLI_CHAT_START_SLOTS=1``; admission.py) on the
real app, served on loopback: every start of a burst answers, whichever way it is sent; a start
that holds the slot long (its chat locked by another transaction) keeps the others waiting no
longer than their longest wait; and a start naming files, which may wait for their extraction,
takes no slot at all."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.integration.http.test_chat_attachments import Files, extract, pending_file, start
from tests.integration.http.test_identity_end_to_end import _settings
from tests.support.live_server import live_server
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.pool import PostgresPool
from whalli.container import build_container
from whalli.entrypoints.http.admission import StartGate
from whalli.entrypoints.http.asgi import build_app
from whalli.entrypoints.http.security import CONTAINER_STATE_KEY

EVENTS = {"Accept": "text/event-stream"}


@pytest.fixture
async def world(stack_urls: StackUrls, pg_pool: PostgresPool, unique: str) -> AsyncIterator[Files]:
    settings = _settings(
        stack_urls, unique, WHALLI_CHAT_START_SLOTS="1", WHALLI_CHAT_ATTACHMENT_WAIT_S="30",
        WHALLI_CHAT_START_MAX_WAIT_S="0.025",
    )  # fmt: skip
    container = build_container(settings)
    app = build_app(settings, container)
    async with live_server(app) as client:
        world = Files(client, container, pg_pool)
        world.gate = app.state[CONTAINER_STATE_KEY].start_gate  # type: ignore[attr-defined]
        yield world


class ChatLock:
    """A chat's row locked by another transaction (as a reply being written in it locks it):
    a start into that chat waits, inside its turn, until ``release``."""

    def __init__(self, pool: PostgresPool, chat_id: str) -> None:
        self._pool, self._chat_id = pool, uuid.UUID(chat_id)
        self._locked, self._released = asyncio.Event(), asyncio.Event()
        self._task: asyncio.Future[None] | None = None

    async def hold(self) -> ChatLock:
        self._task = asyncio.ensure_future(self._run())
        await self._locked.wait()
        return self

    async def release(self) -> None:
        self._released.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT id FROM chats WHERE id = %s FOR UPDATE", (self._chat_id,))
            self._locked.set()
            await self._released.wait()


async def idle_chat(client: Any, auth: dict[str, str], message: str) -> str:
    """A new chat whose first reply has ended; its id."""
    made = await client.post(
        "/api/chat/start", json={"model": "dev/echo", "message": message}, headers=auth | EVENTS
    )
    assert made.status_code == 201, made.text
    _done(made.text)
    return str(_session(made.text)["chatId"])


async def until(check: Callable[[], bool]) -> None:
    """Polls ``check`` (a bound on a wait, not a speed assertion)."""
    for _ in range(1500):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached within 30 s")


def _event(events: str, name: str) -> dict[str, Any]:
    """The data of the first ``name`` event of a reply's events."""
    for block in events.split("\n\n"):
        lines = block.split("\n")
        if f"event: {name}" in lines:
            data = next(line for line in lines if line.startswith("data: "))
            found: dict[str, Any] = json.loads(data.removeprefix("data: "))
            return found
    raise AssertionError(f"no {name} event in {events!r}")


def _session(events: str) -> dict[str, Any]:
    """The ``session`` event's data of a one-request start."""
    return _event(events, "session")


def _waits(outcome: str) -> float:
    """``whalli_chat_start_waits_total`` (this process's: the app is served in it)."""
    value = REGISTRY.get_sample_value("whalli_chat_start_waits_total", {"outcome": outcome})
    return value or 0.0


def _done(events: str) -> dict[str, Any]:
    """The ``done`` event's data of a reply's events."""
    return _event(events, "done")


async def test_a_burst_through_one_slot_is_answered_every_way(world: Files) -> None:
    """Starts answered as JSON (then streamed), as events in one request, by the route below
    Litestar and by Litestar's own (a body of unknown length is handed to it), and
    regenerations: all at once, all answered, and the slot free afterwards."""
    alice = await world.register("alice")
    client, auth = world.client, alice["auth"]
    first = await client.post(
        "/api/chat/start", json={"model": "dev/echo", "message": "one"}, headers=auth
    )
    assert first.status_code == 201, first.text
    chat_id = first.json()["chatId"]
    streamed = await client.get(first.json()["streamUrl"], headers=auth)
    assert _done(streamed.text)["messageId"]

    async def json_start(n: int) -> str:
        body = {"model": "dev/echo", "message": f"json {n}"}
        made = await client.post("/api/chat/start", json=body, headers=auth)
        assert made.status_code == 201, made.text
        events = await client.get(made.json()["streamUrl"], headers=auth)
        return str(_done(events.text)["finishReason"])

    async def one_request(n: int) -> str:
        body = {"model": "dev/echo", "message": f"events {n}"}
        made = await client.post("/api/chat/start", json=body, headers=auth | EVENTS)
        assert made.status_code == 201, made.text
        return str(_done(made.text)["finishReason"])

    async def through_litestar(n: int) -> str:
        body = json.dumps({"model": "dev/echo", "message": f"litestar {n}"}).encode()

        async def chunked() -> AsyncIterator[bytes]:  # no length: not plain, handed over
            yield body

        headers = auth | EVENTS | {"Content-Type": "application/json"}
        made = await client.post("/api/chat/start", content=chunked(), headers=headers)
        assert made.status_code == 201, made.text
        return str(_done(made.text)["finishReason"])

    async def regenerate() -> str:
        made = await client.post(
            "/api/chat/regenerate", json={"chatId": chat_id}, headers=auth | EVENTS
        )
        assert made.status_code == 201, made.text
        return str(_done(made.text)["finishReason"])

    ends = await asyncio.gather(
        *(json_start(n) for n in range(4)),
        *(one_request(n) for n in range(4)),
        *(through_litestar(n) for n in range(3)),
        regenerate(),
    )

    assert ends == ["stop"] * 12
    again = await client.post(
        "/api/chat/start", json={"model": "dev/echo", "message": "after"}, headers=auth | EVENTS
    )
    assert _done(again.text)["finishReason"] == "stop"


async def test_a_start_held_up_keeps_the_others_waiting_no_longer_than_their_turn(
    world: Files,
) -> None:
    """A start into a chat another transaction holds locked waits inside its turn, holding the
    one slot; another start, queued behind it, goes in once its longest wait (25 ms) is over
    and is answered while the first still waits, its wait counted as ``timed_out``."""
    alice = await world.register("alice")
    gate: StartGate = world.gate  # type: ignore[attr-defined]
    chat_id = await idle_chat(world.client, alice["auth"], "first")
    lock = await ChatLock(world.pool, chat_id).hold()
    body = {"model": "dev/echo", "message": "again", "chatId": chat_id}
    held = asyncio.ensure_future(
        world.client.post("/api/chat/start", json=body, headers=alice["auth"])
    )
    await until(lambda: gate.held == 1)
    timed_out_before = _waits("timed_out")

    other = await world.client.post(
        "/api/chat/start", json={"model": "dev/echo", "message": "hi"}, headers=alice["auth"]
    )

    assert other.status_code == 201, other.text
    assert not held.done()
    assert _waits("timed_out") == timed_out_before + 1  # counted for the operator
    await lock.release()  # the chat free: the first start goes on
    assert (await held).status_code == 201
    await until(lambda: gate.held == 0)


async def test_a_start_waiting_for_a_file_takes_no_slot_and_holds_nobody_up(
    world: Files,
) -> None:
    """A start naming a file still being extracted waits for it (up to 30 s here) without
    taking the slot: the next start goes in at once, with no wait at all."""
    alice = await world.register("alice")
    gate: StartGate = world.gate  # type: ignore[attr-defined]
    attachment = await pending_file(world, alice, "slow-scan.pdf")
    waits_before = (_waits("timed_out"), _waits("turn"))
    waiting = asyncio.ensure_future(start(world, alice, attachment))
    await asyncio.sleep(0.3)  # it polls for the file meanwhile

    other = await world.client.post(
        "/api/chat/start", json={"model": "dev/echo", "message": "hi"}, headers=alice["auth"]
    )

    assert other.status_code == 201, other.text
    assert not waiting.done()
    assert (_waits("timed_out"), _waits("turn")) == waits_before  # nobody waited
    assert gate.held == 0
    await extract(world, attachment)  # the file is ready: the first start goes on
    assert (await waiting).status_code == 201
