"""A hunt (a helper's) of ``START_READ_GRACE``: a session attached by its own id, by its own
user, in their personal project, within 2 s of the start's read of that user, in the process
that read it, skips reading that user again. End to end over HTTP on the real app (uvicorn,
Postgres, Redis, the dev/echo model and a fake OpenAI provider on loopback). The hunt found the
grace counted from the session's ``created_at`` (after a slow body or a wait for files) and by
another process's clock; both are fixed, and these tests keep them so."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from dependency_injector import providers

from tests.integration.http.test_chat_attach_elsewhere import held_reply, read_chat, team_project
from tests.integration.http.test_chat_attachments import Files, extract, pending_file, start
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import _settings
from tests.support.access import changed
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.pool import PostgresPool
from whalli.container import build_container
from whalli.domain.services.chat.attach_stream import START_READ_GRACE
from whalli.entrypoints.http.asgi import build_app
from whalli.ports.clock import Clock

ECHO = "dev/echo"
MODEL = "openai/gpt-4o-mini"
GRACE_S = START_READ_GRACE.total_seconds()


# --- helpers ------------------------------------------------------------------------------------
async def _disable(chat: Chat, user_id: str) -> None:
    """The account disabled (as an admin's change would, minus the token revocations)."""
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        user = await uow.users.get(uuid.UUID(user_id))
        user.disabled = True
        await uow.users.update(user)
        await uow.commit()
    await changed(chat.world.container, user_id)


def _url(session_id: str) -> str:
    return f"/api/chat/stream?sessionId={session_id}"


async def _status(
    client: httpx.AsyncClient,
    session_id: str,
    headers: dict[str, str] | None = None,
    *,
    limit: int | None = None,
) -> tuple[int, list[str]]:
    """The stream's status and, when it streams, the event names up to done/error (or
    ``limit`` events)."""
    names: list[str] = []
    async with client.stream("GET", _url(session_id), headers=headers or {}) as response:
        if response.status_code != 200:
            await response.aread()
            return response.status_code, names
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
                if names[-1] in ("done", "error") or len(names) == limit:
                    break
    return 200, names


async def _started(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    body.setdefault("model", ECHO)
    body.setdefault("message", f"hello {uuid.uuid4()}")
    return await chat.start(auth, **body)


# --- 1. the start's read is older than its session ---------------------------------------------
async def test_an_account_disabled_while_its_start_body_trickles_in_cannot_attach(
    chat: Chat,
) -> None:
    """The guard authenticates (reads the user fresh) as soon as the headers arrive; Litestar
    reads the body afterwards, and the session's ``created_at`` is taken once it is in. Here
    the account is disabled between the two (longer apart than the grace; the client decides):
    the start still opens the session with the user authentication read, and the attach right
    after relies on "the start's fresh read" that was made before the account was disabled."""
    alice = await chat.world.register("alice")
    body = json.dumps({"model": ECHO, "message": f"slow {uuid.uuid4()}"}).encode()
    authenticated = asyncio.Event()
    go_on = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield body[:5]
        authenticated.set()
        await go_on.wait()
        yield body[5:]

    headers = {**alice["auth"], "Content-Type": "application/json"}
    posting = asyncio.create_task(
        chat.client.post("/api/chat/start", content=trickle(), headers=headers)
    )
    await authenticated.wait()
    await asyncio.sleep(GRACE_S + 0.5)  # the guard's one read is longer ago than the grace
    await _disable(chat, alice["user"]["id"])
    # (the account is disabled: its credential is refused from now on)
    me = await chat.client.get("/api/auth/me", headers=alice["auth"])
    assert me.status_code == 401
    go_on.set()
    started = await posting
    assert started.status_code == 201, started.text  # the start took the user the guard read
    at_once, _ = await _status(chat.client, started.json()["sessionId"])
    await asyncio.sleep(GRACE_S + 0.1)
    later, _ = await _status(chat.client, started.json()["sessionId"])
    # a disabled account attaches to nothing (later: 404, so the grace alone admits at once)
    assert (at_once, later) == (404, 404)


async def test_an_account_disabled_while_its_start_waits_for_a_file_cannot_attach(
    chat: Chat, pg_pool: PostgresPool
) -> None:
    files = Files(chat.client, chat.world.container, pg_pool)
    alice = await chat.world.register("alice")
    attachment = await pending_file(files, alice, "scan.pdf")
    starting = asyncio.create_task(start(files, alice, attachment))
    await asyncio.sleep(0.5)  # authenticated, and waiting for the file
    await _disable(chat, alice["user"]["id"])
    await asyncio.sleep(GRACE_S + 0.5)  # the start's read of alice is older than the grace
    await extract(files, attachment)
    started = await starting
    assert started.status_code == 201, started.text
    at_once, _ = await _status(chat.client, started.json()["sessionId"])
    await asyncio.sleep(GRACE_S + 0.1)
    later, _ = await _status(chat.client, started.json()["sessionId"])
    assert (at_once, later) == (404, 404)


# --- 2. another process's clock -----------------------------------------------------------------
class _SkewedClock(Clock):
    def __init__(self, offset: timedelta) -> None:
        self._offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


@asynccontextmanager
async def _other_process(
    stack_urls: StackUrls, unique: str, offset: timedelta
) -> AsyncIterator[httpx.AsyncClient]:
    """A second API process on the same Postgres and Redis, its clock off by ``offset``."""
    container = build_container(_settings(stack_urls, unique))
    container.adapters.clock.override(providers.Object(_SkewedClock(offset)))
    container.adapters.process.override(providers.Object("another-api-process"))
    async with live_server(build_app(container.settings(), container)) as client:
        yield client


async def test_a_process_whose_clock_is_behind_keeps_the_grace_past_two_seconds(
    chat: Chat, stack_urls: StackUrls, unique: str
) -> None:
    alice = await chat.world.register("alice")
    async with _other_process(stack_urls, unique, timedelta(seconds=-1.8)) as other:
        started = await _started(chat, alice["auth"])
        await _disable(chat, alice["user"]["id"])
        await asyncio.sleep(GRACE_S + 0.3)
        here, _ = await _status(chat.client, started["sessionId"])
        there, _ = await _status(other, started["sessionId"])
    assert here == 404  # the starting process: the grace is over, the user is read
    assert there == 404  # another process, 2.3 s after the start


async def test_a_process_whose_clock_is_far_behind_reads_the_user_right_after_the_start(
    chat: Chat, stack_urls: StackUrls, unique: str
) -> None:
    """The other side of the same window: a process 10 s behind sees the session as started in
    its future and reads the user (the attach the grace is for pays the read there)."""
    alice = await chat.world.register("alice")
    async with _other_process(stack_urls, unique, timedelta(seconds=-10)) as other:
        started = await _started(chat, alice["auth"])
        await _disable(chat, alice["user"]["id"])
        there, _ = await _status(other, started["sessionId"])
        here, names = await _status(chat.client, started["sessionId"])
    assert there == 404
    assert (here, names[-1]) == (200, "done")  # within the grace where it started (by design)


# --- 3. what the grace does not admit (held) ----------------------------------------------------
async def test_within_the_grace_another_users_credential_with_the_id_is_refused(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    started = await _started(chat, alice["auth"])
    status, _ = await _status(chat.client, started["sessionId"], bob["auth"])
    assert status == 404
    # an API key of bob's too (X-API-Key)
    key = await chat.client.post("/api/keys", json={"name": "k"}, headers=bob["auth"])
    assert key.status_code == 201, key.text
    status, _ = await _status(
        chat.client, started["sessionId"], {"X-API-Key": key.json()["secret"]}
    )
    assert status == 404
    # alice's own id, no credential: admitted (the id is the credential)
    status, names = await _status(chat.client, started["sessionId"])
    assert (status, names[-1]) == (200, "done")


async def test_within_the_grace_a_disabled_users_credential_is_refused_not_ignored(
    chat: Chat,
) -> None:
    """A credential that fails is a 401 on both routes (the lean one hands it to Litestar),
    never a fall back to the id alone."""
    alice = await chat.world.register("alice")
    started = await _started(chat, alice["auth"])
    await _disable(chat, alice["user"]["id"])
    status, _ = await _status(chat.client, started["sessionId"], alice["auth"])
    assert status == 401
    for empty in ({"Authorization": "Bearer"}, {"X-API-Key": ""}):
        # an empty credential is no credential: the id alone, within the grace (by design)
        status, _ = await _status(chat.client, started["sessionId"], empty)
        assert status == 200


async def test_within_the_grace_a_shared_projects_session_reads_its_disabled_user(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    project_id, _ = await team_project(chat, bob, alice, "editor")
    started = await _started(chat, alice["auth"], projectId=project_id)
    await _disable(chat, alice["user"]["id"])
    status, _ = await _status(chat.client, started["sessionId"])
    assert status == 404


async def test_within_the_grace_a_pass_reads_its_disabled_reader(chat: Chat) -> None:
    """A pass is shown by a chat read of a reply still being generated; its reader is read
    fresh even moments after the start (the owner's own pass, in her personal project)."""
    alice = await chat.world.register("alice")
    gate = held_reply(chat)
    try:
        started = await _started(chat, alice["auth"], model=MODEL)
        messages = await read_chat(chat, started["chatId"], alice["auth"])
        reader_pass = messages[-1]["sessionId"]
        assert reader_pass is not None
        assert reader_pass != started["sessionId"]
        await _disable(chat, alice["user"]["id"])
        by_pass, _ = await _status(chat.client, reader_pass)
        by_id, names = await _status(
            chat.client, started["sessionId"], {"Last-Event-ID": "0-0"}, limit=1
        )
    finally:
        gate.set()
    assert by_pass == 404
    assert (by_id, names) == (200, ["token"])  # the id itself, within the grace (by design)


async def test_after_the_grace_a_disabled_users_start_and_regeneration_are_refused(
    chat: Chat,
) -> None:
    """Both session makers, both routes' answers (a plain attach and a resume): 404 once the
    grace is over; the stop endpoint needs a credential, which is refused at once."""
    alice = await chat.world.register("alice")
    started = await _started(chat, alice["auth"])
    first = await _status(chat.client, started["sessionId"])
    assert first[0] == 200
    regenerated = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=alice["auth"]
    )
    assert regenerated.status_code == 201, regenerated.text
    again = regenerated.json()["sessionId"]
    await _disable(chat, alice["user"]["id"])
    stop = await chat.client.post(f"/api/chat/sessions/{again}/stop", headers=alice["auth"])
    assert stop.status_code == 401
    await asyncio.sleep(GRACE_S + 0.2)
    for session_id in (started["sessionId"], again):
        assert (await _status(chat.client, session_id))[0] == 404
        resumed = await _status(chat.client, session_id, {"Last-Event-ID": "1-0"})
        assert resumed[0] == 404
        bad = await chat.client.get(_url(session_id), headers={"Last-Event-ID": "nope"})
        assert bad.status_code == 404  # not found before the id is parsed, as for anyone


async def test_a_regeneration_within_the_grace_is_admitted_by_its_id_like_a_start(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await _started(chat, alice["auth"])
    assert (await _status(chat.client, started["sessionId"]))[0] == 200
    regenerated = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=alice["auth"]
    )
    assert regenerated.status_code == 201, regenerated.text
    status, names = await _status(chat.client, regenerated.json()["sessionId"])
    assert (status, names[-1]) == (200, "done")


async def test_within_the_grace_only_the_starter_stops_a_personal_projects_reply(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    gate = held_reply(chat)
    try:
        started = await _started(chat, alice["auth"], model=MODEL)
        url = f"/api/chat/sessions/{started['sessionId']}/stop"
        by_bob = await chat.client.post(url, headers=bob["auth"])
        anonymous = await chat.client.post(url)
        by_alice = await chat.client.post(url, headers=alice["auth"])
        # the provider is still held: the stop alone ends the reply
        status, names = await asyncio.wait_for(_status(chat.client, started["sessionId"]), 20)
    finally:
        gate.set()
    assert (by_bob.status_code, anonymous.status_code, by_alice.status_code) == (404, 401, 202)
    assert (status, names[-1]) == (200, "done")
    messages = await read_chat(chat, started["chatId"], alice["auth"])
    assert messages[-1]["status"] == "aborted"
