"""Hunt S22 of the chat stream's life cycle over SSE, end to end through the real app (Postgres,
Redis, a loopback OpenAI provider): a start, then ``GET /api/chat/stream``; resuming with
``Last-Event-ID`` (header and query, odd values); readers attaching late or together; stops
racing the end of a reply, a cache hit or a regeneration; ``error`` and ``aborted`` replies as
``GET /api/chats/{id}`` shows them afterwards; event ids; and sessions used after they expired
(a short ``WHALLI_CHAT_SESSION_TTL_S``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_flow import Chat, _read_events, _text
from tests.support.fake_providers import Reply
from tests.support.fake_providers import openai_stream as openai_pieces
from whalli.adapters.embedded.stack import StackUrls
from whalli.config import ConfigError, load_settings

MODEL = "openai/gpt-4o-mini"
ECHO = "dev/echo"
PROBLEM = "application/problem+json"
SESSION_TTL_S = 2  # the short session lifetime of the ``short`` fixture
Events = list[tuple[str | None, str, dict[str, Any]]]


@pytest.fixture
async def short(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    """The app with sessions that expire after ``SESSION_TTL_S`` seconds."""
    env = {"WHALLI_CHAT_SESSION_TTL_S": str(SESSION_TTL_S), "WHALLI_CHAT_TITLES": "off"}
    async with chat_app(stack_urls, unique, **env) as chat:
        yield chat


def _gated(chat: Chat, deltas: list[str], *, after: int = 2) -> asyncio.Event:
    """Script the provider: the role chunk and ``after - 1`` deltas, then wait for the gate."""
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


async def _stop(chat: Chat, session_id: str, auth: dict[str, str]) -> httpx.Response:
    return await chat.client.post(f"/api/chat/sessions/{session_id}/stop", headers=auth)


async def _chat(chat: Chat, chat_id: str, auth: dict[str, str]) -> dict[str, Any]:
    response = await chat.client.get(f"/api/chats/{chat_id}", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _reply(chat: Chat, chat_id: str, auth: dict[str, str]) -> dict[str, Any]:
    reply: dict[str, Any] = (await _chat(chat, chat_id, auth))["messages"][-1]
    assert reply["role"] == "assistant", reply
    return reply


async def _until_ended(chat: Chat, chat_id: str, auth: dict[str, str]) -> dict[str, Any]:
    for _ in range(200):
        reply = await _reply(chat, chat_id, auth)
        if reply["status"] not in ("pending", "streaming"):
            return reply
        await asyncio.sleep(0.05)
    raise AssertionError("the reply never ended")


# === sessions used after they expired ============================================================
async def test_s22s_a_reply_outliving_its_session_ttl_can_still_be_stopped_and_resumed(
    short: Chat,
) -> None:
    """The session lives ``WHALLI_CHAT_SESSION_TTL_S`` from the start, but a reply may generate
    far longer (a reasoning model may think for ``PROVIDER_REASONING_FIRST_TOKEN_TIMEOUT_S``,
    600 s by default, the session's own 600 s). Once the session key expired the reply goes on
    generating, yet its owner gets 404 for a stop, a reconnect and the other tabs' attach
    (the chat read no longer shows a ``sessionId``), and a regeneration is a 409: the chat is
    stuck until the provider ends. A session should live as long as its reply generates."""
    alice = await short.world.register("alice")
    gate = _gated(short, ["slow", " thinker", " ends"], after=3)
    try:
        started = await short.start(alice["auth"], model=MODEL, message=f"long {uuid.uuid4()}")
        first = await short.events(started["sessionId"], limit=2)
        assert _text(first) == "slow thinker"
        await asyncio.sleep(SESSION_TTL_S + 1)  # the session's lifetime passes (not a speed check)
        reply = await _reply(short, started["chatId"], alice["auth"])
        assert reply["status"] in ("pending", "streaming")  # still being generated

        # the first tab resumes after what it had; another attaches through the chat read; the
        # owner stops it
        url = f"/api/chat/stream?sessionId={started['sessionId']}"
        headers = {"Last-Event-ID": str(first[-1][0])}
        async with short.client.stream("GET", url, headers=headers) as resumed:
            resumed_status = resumed.status_code
        stop = await _stop(short, started["sessionId"], alice["auth"])
        seen = (resumed_status, reply["sessionId"] is not None, stop.status_code)
        assert seen == (200, True, 202), stop.text
        rest = await short.events(started["sessionId"], last_event_id=first[-1][0])
        assert (rest[-1][1], rest[-1][2]["status"]) == ("done", "aborted")
    finally:
        gate.set()


# === configuration ===============================================================================
@pytest.mark.parametrize(
    "name", ["WHALLI_CHAT_SESSION_TTL_S", "WHALLI_CHAT_STREAM_TTL_S", "WHALLI_CHAT_CACHE_TTL_S"]
)
@pytest.mark.parametrize("value", ["0", "-5"])
def test_s22s_a_chat_lifetime_of_zero_or_less_is_refused_at_start_up(name: str, value: str) -> None:
    """README: "an invalid value stops" the start. A session TTL of 0 saves every session
    already expired (the start answers a session id whose stream is 404 at once); a stream TTL
    of 0 makes every publish raise (``check_ttl``), so every reply ends ``internal_error``."""
    env = {"WHALLI_ENV": "test", "WHALLI_JWT_SECRET": "s" * 40, name: value}
    with pytest.raises(ConfigError, match=name):
        load_settings(env, dotenv=None)


async def test_s22s_a_reader_attached_before_the_session_expires_reads_on_to_the_end(
    short: Chat,
) -> None:
    """The session is checked when a client attaches, not while it reads: an open stream goes
    on past the session's lifetime and ends with the reply's ``done``."""
    alice = await short.world.register("alice")
    gate = _gated(short, ["early", " late"])
    started = await short.start(alice["auth"], model=MODEL, message=f"expiring {uuid.uuid4()}")
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    try:
        async with short.client.stream("GET", url) as response:
            assert response.status_code == 200
            reading = asyncio.ensure_future(_read_events(response, None))
            await asyncio.sleep(SESSION_TTL_S + 1)  # the session expires while it is read
            gate.set()
            events = await asyncio.wait_for(reading, timeout=30)
    finally:
        gate.set()
    assert _text(events) == "early late"
    assert (events[-1][1], events[-1][2]["status"]) == ("done", "complete")
    ids = [event_id for event_id, _, _ in events]
    assert len(set(ids)) == len(ids)
    assert None not in ids


async def test_s22s_an_expired_session_of_a_finished_reply_is_a_404_problem_everywhere(
    short: Chat,
) -> None:
    """After its lifetime a session id streams nothing (even resumed after its final event: a
    404, not a 204 that would say it existed) and stops nothing, for anyone; the chat read shows
    the finished reply with no ``sessionId``, complete, with its usage."""
    alice, bob = await short.world.register("alice"), await short.world.register("bob")
    started = await short.start(alice["auth"], model=MODEL, message=f"then gone {uuid.uuid4()}")
    events = await short.events(started["sessionId"])
    assert events[-1][1] == "done"
    await asyncio.sleep(SESSION_TTL_S + 1)  # the session's lifetime passes (not a speed check)

    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    for headers in ({}, alice["auth"], {"Last-Event-ID": str(events[-1][0])}):
        _problem(await short.client.get(url, headers=headers), 404)
    _problem(await short.client.get(f"{url}&lastEventId={events[0][0]}"), 404)
    for auth in (alice["auth"], bob["auth"]):
        _problem(await _stop(short, started["sessionId"], auth), 404)
    reply = await _reply(short, started["chatId"], alice["auth"])
    assert reply["sessionId"] is None
    assert (reply["status"], reply["content"]) == ("complete", _text(events))
    assert reply["id"] == events[-1][2]["messageId"]


# === resuming ====================================================================================
async def test_s22s_the_last_event_id_header_wins_over_the_query_parameter(chat: Chat) -> None:
    """README/route: the header (when not empty), else ``lastEventId``. A resume naming both
    continues after the header's id, whatever the query says (even a malformed one)."""
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model=ECHO, message="a b c d e f", cache=False)
    everything = await chat.events(started["sessionId"])
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    for query in (everything[0][0], everything[4][0], "garbage"):
        async with chat.client.stream(
            "GET", f"{url}&lastEventId={query}", headers={"Last-Event-ID": str(everything[2][0])}
        ) as response:
            assert response.status_code == 200, await response.aread()
            rest = await _read_events(response, None)
        assert rest == everything[3:], query
    # an empty header falls back to the query parameter
    async with chat.client.stream(
        "GET", f"{url}&lastEventId={everything[1][0]}", headers={"Last-Event-ID": ""}
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert await _read_events(response, None) == everything[2:]


async def test_s22s_another_users_credential_with_a_finished_sessions_id_is_404_not_204(
    chat: Chat,
) -> None:
    """Bob holding Alice's session id and her final event's id gets the 404 of a session he may
    not read, not the 204 that tells an owner the reply ended (nor the events)."""
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    started = await chat.start(alice["auth"], model=MODEL, message=f"hers {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    for headers in (
        {**bob["auth"], "Last-Event-ID": str(events[-1][0])},
        {**bob["auth"], "Last-Event-ID": str(events[0][0])},
        bob["auth"],
    ):
        _problem(await chat.client.get(url, headers=headers), 404)
    _problem(await chat.client.get(f"{url}&lastEventId={events[-1][0]}", headers=bob["auth"]), 404)


async def test_s22s_a_bad_credential_with_a_valid_session_id_is_a_401_problem(chat: Chat) -> None:
    """A credential, when sent, is checked like anywhere else: a forged or unknown one is a
    401 problem, never the stream (nor a 500)."""
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model=ECHO, message="secret words", cache=False)
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    for headers in (
        {"Authorization": "Bearer not.a.token"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"X-API-Key": "wk_" + "0" * 40},
    ):
        response = await chat.client.get(url, headers=headers)
        _problem(response, 401)
        assert "secret" not in response.text


async def test_s22s_a_cache_hit_streams_token_by_token_and_resumes_in_the_middle(
    chat: Chat,
) -> None:
    """A hit is replayed as the same tokens, each its own event with an id that grows; a reader
    that drops in the middle of it resumes exactly after its last id."""
    alice = await chat.world.register("alice")
    words = " ".join(f"w{i}" for i in range(12)) + f" {uuid.uuid4().hex}"
    first = await chat.start(alice["auth"], model=ECHO, message=words)
    original = await chat.events(first["sessionId"])
    assert original[-1][2]["cached"] is False
    hit = await chat.start(alice["auth"], model=ECHO, message=words)
    part = await chat.events(hit["sessionId"], limit=5)
    rest = await chat.events(hit["sessionId"], last_event_id=part[-1][0])
    replayed = part + rest
    assert replayed == await chat.events(hit["sessionId"])
    assert replayed[-1][2]["cached"] is True
    tokens = [data["delta"] for _, name, data in replayed if name == "token"]
    assert tokens == [data["delta"] for _, name, data in original if name == "token"]
    assert len(tokens) > 5
    ids = [tuple(int(p) for p in str(event_id).split("-")) for event_id, _, _ in replayed]
    assert ids == sorted(set(ids))  # strictly increasing, no repeat
    reply = await _reply(chat, hit["chatId"], alice["auth"])
    assert (reply["status"], reply["content"], reply["cached"]) == ("complete", words, True)


# === stops =======================================================================================
async def test_s22s_a_stop_racing_a_cache_hit_agrees_with_what_is_saved(chat: Chat) -> None:
    """A stop sent right after the start of a cached answer: whichever wins, the ``done`` the
    stream ends with and the saved reply say the same status and text."""
    alice = await chat.world.register("alice")
    words = f"cached words {uuid.uuid4().hex}"
    await chat.events((await chat.start(alice["auth"], model=ECHO, message=words))["sessionId"])
    hit = await chat.start(alice["auth"], model=ECHO, message=words)
    stop = await _stop(chat, hit["sessionId"], alice["auth"])
    assert stop.status_code == 202, stop.text
    events = await chat.events(hit["sessionId"])
    assert events[-1][1] == "done"
    reply = await _until_ended(chat, hit["chatId"], alice["auth"])
    assert reply["status"] == events[-1][2]["status"]
    assert reply["content"] == _text(events)
    assert reply["cached"] is events[-1][2]["cached"]
    stopped_again = await _stop(chat, hit["sessionId"], alice["auth"])
    assert stopped_again.status_code == 202
    assert await _reply(chat, hit["chatId"], alice["auth"]) == reply


async def test_s22s_a_stop_of_the_replaced_replys_session_leaves_the_regeneration_alone(
    chat: Chat,
) -> None:
    """The session of the reply a regeneration replaced is still alive (its lifetime): stopping
    it (an old tab's Stop button) must not stop or fail the new reply, which has its own."""
    alice = await chat.world.register("alice")
    old = await chat.start(alice["auth"], model=MODEL, message=f"again {uuid.uuid4()}")
    assert (await chat.events(old["sessionId"]))[-1][1] == "done"
    gate = _gated(chat, ["new", " answer"])
    try:
        response = await chat.client.post(
            "/api/chat/regenerate", json={"chatId": old["chatId"]}, headers=alice["auth"]
        )
        assert response.status_code == 201, response.text
        new = response.json()
        assert new["sessionId"] != old["sessionId"]
        first = await chat.events(new["sessionId"], limit=1)
        await asyncio.sleep(2.5)  # past ORPHAN_AFTER: the old session's stop may end orphans
        assert (await _stop(chat, old["sessionId"], alice["auth"])).status_code == 202
        gate.set()
        rest = await chat.events(new["sessionId"], last_event_id=first[-1][0])
    finally:
        gate.set()
    assert _text(first + rest) == "new answer"
    assert (rest[-1][1], rest[-1][2]["status"]) == ("done", "complete")
    reply = await _until_ended(chat, old["chatId"], alice["auth"])
    assert (reply["id"], reply["status"], reply["content"]) == (
        rest[-1][2]["messageId"],
        "complete",
        "new answer",
    )


# === long replies ================================================================================
async def test_s22s_a_late_reader_of_a_reply_longer_than_ten_thousand_tokens_gets_all_of_it(
    chat: Chat,
) -> None:
    """A long answer (a 16k-token GPT-4o-mini reply, a 64k-token Claude one) streams one event a
    token. The first client gets them all from memory; but another tab attaching after the end
    (within the session's lifetime), a reconnect with ``Last-Event-ID`` of an early token, or a
    reader in another API process read the Redis stream, which ``XADD MAXLEN ~ 10000`` trimmed:
    they get the reply without its beginning, silently, ending with a normal ``done``."""
    alice = await chat.world.register("alice")
    words = " ".join(f"w{i}" for i in range(10_600))
    started = await chat.start(alice["auth"], model=ECHO, message=words, cache=False)
    live = await chat.events(started["sessionId"])
    assert live[-1][1] == "done"
    assert _text(live) == words  # the first reader, from memory, got everything

    late = await chat.events(started["sessionId"])  # another tab, after the end
    resumed = await chat.events(started["sessionId"], last_event_id=live[9][0])
    assert (len(late), len(resumed)) == (len(live), len(live) - 10)
    assert _text(late) == words
    assert resumed == live[10:]


async def test_s22s_an_id_of_milliseconds_alone_resumes_as_its_first_sequence_number(
    chat: Chat,
) -> None:
    """``parse_event_id`` takes ``<ms>`` alone (as Redis does, ``<ms>-0``): a resume with the
    reply's own milliseconds replays it whole, live (from memory) as after the end (Redis)."""
    alice = await chat.world.register("alice")
    gate = _gated(chat, ["one", " two", " three"])
    try:
        started = await chat.start(alice["auth"], model=MODEL, message=f"ms {uuid.uuid4()}")
        first = await chat.events(started["sessionId"], limit=1)
        ms = str(first[0][0]).partition("-")[0]
        gate.set()
        live = await chat.events(started["sessionId"], last_event_id=ms)
    finally:
        gate.set()
    assert _text(live) == "one two three"
    assert live[0] == first[0]
    assert await chat.events(started["sessionId"], last_event_id=ms) == live
    assert await chat.events(started["sessionId"], last_event_id=f"{ms}-0") == live
