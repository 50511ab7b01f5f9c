"""Hunt S23 of races and lifecycle interleavings on the chat path, end to end through the real
app on uvicorn (Postgres, Redis, a loopback OpenAI provider held open by a gate): what happens
to a reply being generated while its caller's credentials end (logout, a revoked API key),
while its readers come and go (the open-stream gauge, the reader leases, abandonment), right
after its ``done`` (is it really saved?), while a stop races its last chunk, and while a start
races the deletion of its chat."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.integration.http.test_chat_attach_elsewhere import team_project
from tests.integration.http.test_chat_attachments import Files, pending_file
from tests.integration.http.test_chat_races import (
    RaceChat,
    _race_app,
    answered,
    delete,
    read_chat,
    regenerate,
    settled,
    start,
    stop,
    stored,
    usage,
)
from tests.integration.http.test_identity_end_to_end import _settings
from tests.support.fake_providers import FakeProviderServer, Reply, openai_default
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.postgres.pool import PostgresPool
from whalli.container import build_container
from whalli.entrypoints.http.asgi import build_app

MODEL = "openai/gpt-4o-mini"
ECHO = "dev/echo"
PROBLEM = "application/problem+json"
GAUGES = ("whalli_sse_connections_active", "whalli_http_requests_in_flight")
Events = list[tuple[str | None, str, dict[str, Any]]]


@pytest.fixture
async def race(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[RaceChat]:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(stack_urls, unique, provider, WHALLI_CHAT_TITLES="off") as chat,
    ):
        yield chat


@pytest.fixture
async def tracked(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[RaceChat]:
    """Readers counted (abandonment on, after 1 s without any reader)."""
    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(
            stack_urls, unique, provider, WHALLI_CHAT_TITLES="off",
            WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S="1",
        ) as chat,
    ):  # fmt: skip
        yield chat


# --- helpers -------------------------------------------------------------------------------------
def _gated(chat: RaceChat, deltas: list[str], *, after: int = 2) -> asyncio.Event:
    """The role chunk and ``after - 1`` deltas, then the provider waits for the gate."""
    gate = asyncio.Event()
    chat.provider.script(
        Reply(chunks=openai_pieces(deltas, usage=(9, len(deltas))), gate=gate, gate_after=after)
    )
    return gate


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _text(events: Events) -> str:
    return "".join(data["delta"] for _, name, data in events if name == "token")


def _sample(metrics: str, name: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        if re.match(rf"{name}(\{{[^}}]*\}})? ", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _gauge(chat: RaceChat) -> tuple[float, ...]:
    """The open streams and requests in flight (this scrape counts in the latter, always)."""
    response = await chat.client.get("/api/metrics")
    assert response.status_code == 200, response.text
    return tuple(_sample(response.text, name) for name in GAUGES)


async def _read(
    chat: RaceChat,
    session_id: str,
    *,
    headers: dict[str, str] | None = None,
    limit: int | None = None,
    first: asyncio.Event | None = None,
) -> Events:
    """Events of one connection until done/error (or ``limit``), ``first`` set on the first."""
    found: Events = []
    fields: dict[str, str] = {}
    url = f"/api/chat/stream?sessionId={session_id}"
    async with chat.client.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    name = fields.get("event", "message")
                    found.append((fields.get("id"), name, json.loads(fields["data"])))
                    if first is not None:
                        first.set()
                    if name in ("done", "error") or len(found) == limit:
                        break
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value.removeprefix(" ")
    return found


async def _last_reply(chat: RaceChat, chat_id: str, auth: dict[str, str]) -> dict[str, Any]:
    response = await read_chat(chat, chat_id, auth)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()["messages"][-1]
    assert reply["role"] == "assistant", reply
    return reply


async def _readers(chat: RaceChat, session_id: str) -> int:
    stream = await resolved(chat.world.container.adapters.reply_stream())
    counts = await stream.readers_of([session_id])
    return counts.get(session_id, 0)


async def _readers_settled_at(chat: RaceChat, session_id: str, expected: int) -> int:
    """The session's reader count, once it is ``expected`` (the server notices a hang-up a
    moment after it), or as it still is after about 5 s."""
    for _ in range(100):
        count = await _readers(chat, session_id)
        if count == expected:
            return count
        await asyncio.sleep(0.05)
    return await _readers(chat, session_id)


async def _status(chat: RaceChat, url: str) -> int:
    """The status a stream request is answered with (its body left unread)."""
    async with chat.client.stream("GET", url) as response:
        return response.status_code


# === credentials that end while a reply is generated =============================================
async def test_s23r_a_session_started_with_a_revoked_api_key_admits_nobody_by_its_id(
    race: RaceChat,
) -> None:
    """A key is revoked because it leaked. Whoever held it started a reply and got its session
    id: the key is refused at once everywhere else (401), but the session id alone (what a
    browser ``EventSource`` sends) still streams the reply, from its first token, for as long
    as the session lives (10 minutes, renewed while the reply generates). The chat session
    records no credential it came from (``ChatSession`` has no key or login-session id), and
    ``AttachStreamHandler`` only checks that the user is not disabled. What the caller lost
    access to should answer 404, as for an expired session."""
    chat = race
    alice = await chat.world.register("alice")
    made = await chat.client.post("/api/keys", json={"name": "leaky"}, headers=alice["auth"])
    assert made.status_code == 201, made.text
    key = {"Authorization": f"Bearer {made.json()['secret']}"}
    gate = _gated(chat, ["secret", " plans"])
    try:
        started = await chat.start(key, model=MODEL, message=f"leak {uuid.uuid4()}")
        first = await _read(chat, started["sessionId"], limit=1)
        assert _text(first) == "secret"
        revoked = await chat.client.delete(f"/api/keys/{made.json()['id']}", headers=alice["auth"])
        assert revoked.status_code in (200, 204), revoked.text
        _problem(await chat.client.get("/api/chats", headers=key), 401)  # the key is dead

        status = await _status(chat, f"/api/chat/stream?sessionId={started['sessionId']}")
    finally:
        gate.set()
        await settled(chat)
    assert status == 404, "the revoked key's session id still streams the reply"


async def test_s23r_a_session_id_keeps_streaming_after_its_user_signed_out_everywhere(
    race: RaceChat,
) -> None:
    """``POST /api/auth/logout-all`` ("end every session of the caller": a lost laptop, a
    shared computer) ends every access and refresh token at once, yet a reply's session id
    (in the page's URL or the browser's history) still streams the reply to anyone, and the
    chat read's reader pass too, until they expire: neither is tied to the login session
    that started the reply, and attaching checks only that the account is not disabled."""
    chat = race
    alice = await chat.world.register("alice")
    gate = _gated(chat, ["private", " matter"])
    try:
        started = await chat.start(alice["auth"], model=MODEL, message=f"mine {uuid.uuid4()}")
        first = await _read(chat, started["sessionId"], limit=1)
        assert _text(first) == "private"
        reply = await _last_reply(chat, started["chatId"], alice["auth"])
        reader_pass = reply["sessionId"]
        assert reader_pass is not None
        out = await chat.client.post("/api/auth/logout-all", headers=alice["auth"])
        assert out.status_code == 204, out.text
        _problem(await chat.client.get("/api/chats", headers=alice["auth"]), 401)

        by_id = await _status(chat, f"/api/chat/stream?sessionId={started['sessionId']}")
        by_pass = await _status(chat, f"/api/chat/stream?sessionId={reader_pass}")
        seen = (by_id, by_pass)
    finally:
        gate.set()
        await settled(chat)
    assert seen == (404, 404), seen


async def test_s23r_a_stop_with_a_key_revoked_mid_reply_is_401_and_the_reply_goes_on_saved(
    race: RaceChat,
) -> None:
    chat = race
    alice = await chat.world.register("alice")
    made = await chat.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
    key = {"Authorization": f"Bearer {made.json()['secret']}"}
    gate = _gated(chat, ["kept", " whole"])
    try:
        started = await chat.start(key, model=MODEL, message=f"kept {uuid.uuid4()}")
        first = await _read(chat, started["sessionId"], limit=1)
        revoked = await chat.client.delete(f"/api/keys/{made.json()['id']}", headers=alice["auth"])
        assert revoked.status_code in (200, 204), revoked.text
        refused = await stop(chat, started["sessionId"], key)
    finally:
        gate.set()
    # resumed by alice signed in: the session id alone no longer admits anyone once the key
    # that started it is revoked (see the test above)
    resume = {"Last-Event-ID": str(first[-1][0]), **alice["auth"]}
    rest = await _read(chat, started["sessionId"], headers=resume)
    await settled(chat)
    _problem(refused, 401)
    assert _text(first + rest) == "kept whole"
    assert (rest[-1][1], rest[-1][2]["status"]) == ("done", "complete")
    saved = await _last_reply(chat, started["chatId"], alice["auth"])
    assert (saved["status"], saved["content"]) == ("complete", "kept whole")


# === readers coming and going ====================================================================
@pytest.fixture(params=["tracked", "untracked"])
async def either(
    request: pytest.FixtureRequest, stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[tuple[RaceChat, bool]]:
    """The app with readers counted (abandonment on, after 60 s) or not (the default)."""
    tracking = request.param == "tracked"
    env = {"WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S": "60"} if tracking else {}
    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(stack_urls, unique, provider, WHALLI_CHAT_TITLES="off", **env) as chat,
    ):
        yield chat, tracking


async def test_s23r_two_readers_one_leaving_mid_reply_bring_the_gauge_and_leases_back_to_zero(
    either: tuple[RaceChat, bool],
) -> None:
    """With readers counted (abandonment on) and without: the one who hangs up is counted
    out at once (open streams, reader leases), the other reads to the end, and nothing stays
    counted after."""
    chat, tracking = either
    alice = await chat.world.register("alice")
    baseline = await _gauge(chat)
    gate = _gated(chat, ["one", " two", " three"])
    try:
        started = await chat.start(alice["auth"], model=MODEL, message=f"two {uuid.uuid4()}")
        session_id = started["sessionId"]
        stays_first = asyncio.Event()
        staying = asyncio.create_task(_read(chat, session_id, first=stays_first))
        await asyncio.wait_for(stays_first.wait(), 10)
        leaving = await _read(chat, session_id, limit=1)  # reads one event, then hangs up
        assert _text(leaving) == "one"
        expected = 1 if tracking else 0
        while_one_reads = await _readers_settled_at(chat, session_id, expected)
        open_streams = baseline[0] + 1
        for _ in range(100):
            if (await _gauge(chat))[0] == open_streams:
                break
            await asyncio.sleep(0.05)
        streams_while_one_reads = (await _gauge(chat))[0]
    finally:
        gate.set()
    events = await asyncio.wait_for(staying, 10)
    await settled(chat)
    assert while_one_reads == expected  # the one who left is counted out, the other still in
    assert streams_while_one_reads == open_streams
    assert _text(events) == "one two three"
    assert (events[-1][1], events[-1][2]["status"]) == ("done", "complete")
    for _ in range(200):  # the server notices the hang-ups as they come
        if await _gauge(chat) == baseline and await _readers(chat, session_id) == 0:
            break
        await asyncio.sleep(0.05)
    assert (await _gauge(chat), await _readers(chat, session_id)) == (baseline, 0)


async def test_s23r_with_abandonment_on_the_reply_one_of_two_readers_still_reads_is_finished(
    tracked: RaceChat,
) -> None:
    """Abandonment stops a reply nobody reads; one reader of two leaving is not that."""
    chat = tracked
    alice = await chat.world.register("alice")
    gate = _gated(chat, ["still", " read"])
    try:
        started = await chat.start(alice["auth"], model=MODEL, message=f"stay {uuid.uuid4()}")
        stays_first = asyncio.Event()
        staying = asyncio.create_task(_read(chat, started["sessionId"], first=stays_first))
        await asyncio.wait_for(stays_first.wait(), 10)
        await _read(chat, started["sessionId"], limit=1)  # the other tab closes
        await asyncio.sleep(2.5)  # past the 1 s of abandonment (not a speed check)
    finally:
        gate.set()
    events = await asyncio.wait_for(staying, 10)
    await settled(chat)
    assert (events[-1][1], events[-1][2]["status"]) == ("done", "complete"), events[-1]
    saved = await _last_reply(chat, started["chatId"], alice["auth"])
    assert (saved["status"], saved["content"]) == ("complete", "still read")


# === done means saved ============================================================================
@pytest.mark.parametrize("cached", [False, True])
async def test_s23r_right_after_done_the_reply_is_saved_rated_forked_and_regenerated(
    race: RaceChat, cached: bool
) -> None:
    chat = race
    alice = await chat.world.register("alice")
    prompt = f"saved {uuid.uuid4()}"
    if cached:  # the same question once before: this time the cache answers
        await answered(chat, alice["auth"], prompt)
    for round_ in range(3):
        started = await chat.start(alice["auth"], model=ECHO, message=prompt)
        events = await _read(chat, started["sessionId"])
        done = events[-1]
        assert done[1] == "done", done
        assert done[2]["cached"] is (cached or round_ > 0)
        # at once, with nothing in between: every action that needs a finished reply
        read, rated, forked = await asyncio.gather(
            read_chat(chat, started["chatId"], alice["auth"]),
            chat.client.put(
                f"/api/chats/{started['chatId']}/messages/{done[2]['messageId']}/feedback",
                json={"rating": "up"}, headers=alice["auth"],
            ),
            chat.client.post(f"/api/chats/{started['chatId']}/fork", headers=alice["auth"]),
        )  # fmt: skip
        reply = read.json()["messages"][-1]
        assert (reply["id"], reply["status"], reply["content"]) == (
            done[2]["messageId"], "complete", _text(events),
        )  # fmt: skip
        assert reply["sessionId"] is None
        assert rated.status_code == 200, rated.text
        assert forked.status_code in (200, 201), forked.text
        again = await regenerate(chat, alice["auth"], chatId=started["chatId"])
        assert again.status_code == 201, again.text
        await _read(chat, again.json()["sessionId"])
    await settled(chat)


async def test_s23r_a_stop_racing_the_last_chunk_agrees_with_what_is_saved(
    race: RaceChat,
) -> None:
    """The final event says ``complete`` or ``aborted``; the saved reply says the same, with
    the text the stream carried, and its usage is counted once."""
    chat = race
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    for round_ in range(4):
        gate = _gated(chat, ["almost", " there", " now"])
        started = await chat.start(alice["auth"], model=MODEL, message=f"r{round_} {uuid.uuid4()}")
        first = await _read(chat, started["sessionId"], limit=1)
        gate.set()
        stopped = await stop(chat, started["sessionId"], alice["auth"])
        assert stopped.status_code == 202, stopped.text
        rest = await _read(chat, started["sessionId"], headers={"Last-Event-ID": str(first[-1][0])})
        await settled(chat)
        end = rest[-1]
        assert end[1] == "done", end
        saved = await _last_reply(chat, started["chatId"], alice["auth"])
        assert (saved["status"], saved["content"]) == (end[2]["status"], _text(first + rest))
        assert saved["id"] == end[2]["messageId"]
        told = (end[2]["usage"], end[2]["costUsd"], end[2]["finishReason"])
        assert (saved["usage"], saved["costUsd"], saved["finishReason"]) == told
    assert (await usage(chat, alice, before)).requests == 4


# === a start racing the deletion of its chat =====================================================
async def test_s23r_a_message_sent_as_its_chat_is_deleted_is_201_or_404_and_leaves_nothing(
    race: RaceChat,
) -> None:
    chat = race
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    accepted = 0
    for round_ in range(6):
        opened = await answered(chat, alice["auth"], f"base {round_} {uuid.uuid4()}")
        sent, deleted = await asyncio.gather(
            start(chat, alice["auth"], model=MODEL, message="more", chatId=opened["chatId"]),
            delete(chat, opened["chatId"], alice["auth"]),
        )
        assert deleted.status_code == 204, (round_, deleted.text)
        if sent.status_code == 201:
            accepted += 1
            events = await _read(chat, sent.json()["sessionId"])
            end = (events[-1][1], events[-1][2].get("code"))
            assert end in (("done", None), ("error", "chat_deleted")), events[-1]
        else:
            assert _problem(sent, 404)["code"] == "chat_not_found", sent.text
        await settled(chat)
        assert await stored(chat, opened["chatId"]) == []
        assert (await read_chat(chat, opened["chatId"], alice["auth"])).status_code == 404
    spent = await usage(chat, alice, before)
    assert spent.requests == 6 + accepted  # the echoed first replies, and every reply started


async def test_s23r_a_one_request_start_whose_client_leaves_mid_reply_is_saved_and_resumable(
    tracked: RaceChat,
) -> None:
    """``POST /api/chat/start`` with ``Accept: text/event-stream``: the client reads the
    ``session`` event and a token, then hangs up. The reply goes on (a reader comes back in
    time), is saved whole, resumes by the session id, and no gauge stays up."""
    chat = tracked
    alice = await chat.world.register("alice")
    baseline = await _gauge(chat)
    gate = _gated(chat, ["gone", " and", " back"])
    found: Events = []
    try:
        headers = {**alice["auth"], "Accept": "text/event-stream"}
        body = {"model": MODEL, "message": f"one {uuid.uuid4()}"}
        async with chat.client.stream(
            "POST", "/api/chat/start", json=body, headers=headers
        ) as response:
            assert response.status_code == 201, await response.aread()
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "data" in fields:
                        name = fields.get("event", "message")
                        found.append((fields.get("id"), name, json.loads(fields["data"])))
                        if name == "token":
                            break  # the client goes away
                    fields = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    fields[key] = value.removeprefix(" ")
        session = next(data for _, name, data in found if name == "session")
        last_token = found[-1][0]
        back = asyncio.create_task(
            _read(chat, session["sessionId"], headers={"Last-Event-ID": str(last_token)})
        )
        await asyncio.sleep(0.3)  # let the reader attach before the rest is released
    finally:
        gate.set()
    rest = await asyncio.wait_for(back, 10)
    await settled(chat)
    assert _text(found) + _text(rest) == "gone and back"
    assert (rest[-1][1], rest[-1][2]["status"]) == ("done", "complete")
    saved = await _last_reply(chat, session["chatId"], alice["auth"])
    assert (saved["status"], saved["content"]) == ("complete", "gone and back")
    for _ in range(200):
        if await _gauge(chat) == baseline:
            break
        await asyncio.sleep(0.05)
    assert await _gauge(chat) == baseline


# === the file a start waits for is deleted =======================================================
async def test_s23r_a_file_deleted_while_a_start_waits_for_its_text_is_404_and_saves_nothing(
    stack_urls: StackUrls, pg_pool: PostgresPool, unique: str
) -> None:
    settings = _settings(stack_urls, unique, WHALLI_CHAT_ATTACHMENT_WAIT_S="3")
    container = build_container(settings)
    async with live_server(build_app(settings, container)) as client:
        world = Files(client, container, pg_pool)
        alice = await world.register("alice")
        attachment = await pending_file(world, alice, "doomed.pdf")
        starting = asyncio.create_task(
            client.post(
                "/api/chat/start",
                json={"model": ECHO, "message": f"sum {uuid.uuid4()}",
                      "attachmentIds": [str(attachment.id)]},
                headers=alice["auth"],
            )
        )  # fmt: skip
        await asyncio.sleep(0.3)  # the start is polling for the text by now (not a speed check)
        deleted = await client.delete(f"/api/files/{attachment.id}", headers=alice["auth"])
        assert deleted.status_code == 204, deleted.text
        response = await asyncio.wait_for(starting, 15)
        listed = await client.get("/api/chats", headers=alice["auth"])
    assert _problem(response, 404)["code"] == "attachment_not_found", response.text
    assert listed.json()["items"] == []


# === a chat or project deleted under a reply still being generated ===============================


@pytest.mark.parametrize("deleted", ["chat", "project"])
async def test_s23r_deleting_the_chat_of_a_reply_being_generated_stops_the_provider_call(
    patient: RaceChat, deleted: str
) -> None:
    """The reply is written for a chat that no longer exists: nobody can ever read it (the
    final write finds no message and saves nothing). Yet the provider call goes on to its end,
    every token billed to the user (recorded in their usage), however long the reply: the
    deletion asks no stop of the chat's live sessions. A stop closes the upstream call within
    a poll interval; a deletion should too (its readers then get ``chat_deleted`` at once)."""
    chat = patient
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    project_id, _ = await team_project(chat, owner, editor, "editor")
    chat.provider.script(Reply(chunks=openai_pieces(["endless"], usage=None)[:-2], hold=True))
    started = await chat.start(
        editor["auth"], model=MODEL, message=f"long {uuid.uuid4()}", projectId=project_id
    )
    first = await _read(chat, started["sessionId"], limit=1)
    assert _text(first) == "endless"
    if deleted == "chat":
        gone = await delete(chat, started["chatId"], editor["auth"])
    else:
        gone = await chat.client.delete(f"/api/projects/{project_id}", headers=owner["auth"])
    assert gone.status_code == 204, gone.text
    try:
        # generous: a stop's poll is 0.25 s; the provider's own idle timeout is 300 s
        await asyncio.wait_for(chat.provider.disconnected.wait(), 10)
        closed = True
    except TimeoutError:
        closed = False
    finally:
        if not closed:  # end it as its owner would, so the test leaves nothing running
            stream = await resolved(chat.world.container.adapters.reply_stream())
            await stream.request_stop(started["sessionId"], 60)
        await settled(chat)
    assert closed, "the provider call of the deleted chat's reply was still open"


# === a stop asked of another API process =========================================================
async def test_s23r_a_stop_through_another_process_after_two_seconds_aborts_not_fails_it(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """A stop in a process that does not generate the reply, on a session older than the
    orphan threshold (2 s): the generating process is alive, so the reply ends ``aborted``
    with its text and usage (not ``failed`` as interrupted by the stopping process)."""
    async with (
        FakeProviderServer(openai_default()) as provider,
        _race_app(stack_urls, unique, provider, WHALLI_CHAT_TITLES="off") as one,
        _race_app(stack_urls, unique, provider, WHALLI_CHAT_TITLES="off") as other,
    ):
        alice = await one.world.register("alice")
        before = datetime.now(UTC)
        gate = _gated(one, ["halfway", " never"])
        try:
            started = await one.start(alice["auth"], model=MODEL, message=f"x {uuid.uuid4()}")
            first = await _read(one, started["sessionId"], limit=1)
            await asyncio.sleep(2.5)  # past the orphan threshold (not a speed check)
            stopped = await stop(other, started["sessionId"], alice["auth"])
            assert stopped.status_code == 202, stopped.text
            rest = await _read(
                other, started["sessionId"], headers={"Last-Event-ID": str(first[-1][0])}
            )
        finally:
            gate.set()
            await settled(one)
        assert (rest[-1][1], rest[-1][2].get("status")) == ("done", "aborted"), rest[-1]
        saved = await _last_reply(other, started["chatId"], alice["auth"])
        assert (saved["status"], saved["content"]) == ("aborted", "halfway")
        assert (await usage(one, alice, before)).requests == 1


# === stops late, plans changed ===================================================================
async def test_s23r_a_stop_past_the_orphan_threshold_after_done_changes_nothing(
    race: RaceChat,
) -> None:
    """Past 2 s the stop also looks for a reply nobody generates any more and ends it
    ``failed``; a reply that ended ``done`` must not be touched by that."""
    chat = race
    alice = await chat.world.register("alice")
    before = datetime.now(UTC)
    started = await chat.start(alice["auth"], model=MODEL, message=f"fin {uuid.uuid4()}")
    events = await _read(chat, started["sessionId"])
    assert events[-1][1] == "done"
    await settled(chat)
    await asyncio.sleep(2.5)  # past the orphan threshold (not a speed check)
    first, second = await asyncio.gather(
        stop(chat, started["sessionId"], alice["auth"]),
        stop(chat, started["sessionId"], alice["auth"]),
    )
    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    saved = await _last_reply(chat, started["chatId"], alice["auth"])
    assert (saved["status"], saved["content"], saved["error"]) == (
        "complete", _text(events), None,
    )  # fmt: skip
    resumed = await chat.client.get(
        f"/api/chat/stream?sessionId={started['sessionId']}",
        headers={"Last-Event-ID": str(events[-1][0])},
    )
    assert resumed.status_code == 204
    assert (await usage(chat, alice, before)).requests == 1


async def test_s23r_a_plan_downgraded_mid_reply_lets_it_finish_saved_and_counted(
    race: RaceChat,
) -> None:
    """The start was allowed: the reply under way finishes and is saved as its ``done`` says
    (the downgrade refuses the next start, as other tests pin)."""
    chat = race
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    pro = "openai/gpt-4o"
    plan = f"/api/admin/users/{alice['user']['id']}"
    assert (await chat.client.patch(plan, json={"plan": "pro"}, headers=admin)).status_code == 200
    before = datetime.now(UTC)
    gate = _gated(chat, ["paid", " for"])
    try:
        started = await chat.start(alice["auth"], model=pro, message=f"pro {uuid.uuid4()}")
        first = await _read(chat, started["sessionId"], limit=1)
        down = await chat.client.patch(plan, json={"plan": "free"}, headers=admin)
        assert down.status_code == 200, down.text
    finally:
        gate.set()
    rest = await _read(chat, started["sessionId"], headers={"Last-Event-ID": str(first[-1][0])})
    await settled(chat)
    assert (rest[-1][1], rest[-1][2]["status"]) == ("done", "complete")
    saved = await _last_reply(chat, started["chatId"], alice["auth"])
    assert (saved["status"], saved["content"], saved["model"]) == ("complete", "paid for", pro)
    assert (await usage(chat, alice, before)).requests == 1


async def test_s23r_a_new_chat_started_as_its_project_is_deleted_is_201_or_404_never_a_5xx(
    race: RaceChat,
) -> None:
    """An editor starts a new chat in a team project while its owner deletes it: the start
    wins (its reply then ends ``chat_deleted``) or is told the project is gone; nothing of it
    stays, and every reply started is counted once."""
    chat = race
    owner = await chat.world.register("owner")
    editor = await chat.world.register("editor")
    before = datetime.now(UTC)
    accepted = 0
    for round_ in range(6):
        project_id, _ = await team_project(chat, owner, editor, "editor")
        sent, deleted = await asyncio.gather(
            start(
                chat, editor["auth"], model=MODEL, message=f"p{round_} {uuid.uuid4()}",
                projectId=project_id,
            ),
            chat.client.delete(f"/api/projects/{project_id}", headers=owner["auth"]),
        )  # fmt: skip
        assert deleted.status_code == 204, (round_, deleted.text)
        if sent.status_code == 201:
            accepted += 1
            url = f"/api/chat/stream?sessionId={sent.json()['sessionId']}"
            async with chat.client.stream("GET", url, headers=editor["auth"]) as response:
                attached = response.status_code
            if attached == 200:  # attached before the project went
                events = await _read(chat, sent.json()["sessionId"], headers=editor["auth"])
                end = (events[-1][1], events[-1][2].get("code"))
                assert end in (("done", None), ("error", "chat_deleted")), events[-1]
            else:  # the project is gone: like any session one may no longer read
                assert attached == 404, attached
            await settled(chat)
            assert await stored(chat, sent.json()["chatId"]) == []
        else:
            assert sent.status_code == 404, (round_, sent.status_code, sent.text)
            assert sent.headers["content-type"].startswith(PROBLEM)
        await settled(chat)
        listed = await chat.client.get(f"/api/chats?projectId={project_id}", headers=owner["auth"])
        assert listed.status_code == 404, listed.text
    assert (await usage(chat, editor, before)).requests == accepted
