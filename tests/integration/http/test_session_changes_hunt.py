"""A hunt for defects in the fourteenth session's changes: resumed streams ending with the
final event, null unsetting a regeneration's parameter, the worker's metrics server, the stream
duration histogram and the hand-written access token verification, on the real stack. Kept as
a regression suite: it found a preset refilling a parameter the regeneration set to null, a
reader resumed beyond a live reply's events that then died ending with no event, and the
metrics server answering 501 to HEAD and POST, all fixed since."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_presets import MODEL, preset
from tests.unit.identity.test_access_token_parity import KEYED, NOW, TOKENS, oracle
from tests.unit.identity.test_access_tokens import AUDIENCE, ISSUER, SECRET
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.domain.model.errors import InvalidToken
from whalli.domain.model.replies import DoneEvent, ErrorEvent, TokenEvent
from whalli.domain.services.chat.read_reply import HEARTBEAT, INTERRUPTED, ReadReplyHandler
from whalli.entrypoints.worker.metrics_server import MetricsServer

TTL = 600


# --- 1. resumed streams ---------------------------------------------------------------------------
async def test_a_finished_reply_resumed_at_before_or_beyond_its_final_event(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model="dev/echo", message="one two three four")
    events = await chat.events(started["sessionId"])
    final_id = events[-1][0]
    assert events[-1][1] == "done"
    assert final_id is not None
    url = f"/api/chat/stream?sessionId={started['sessionId']}"

    at_final = await chat.client.get(url, headers={"Last-Event-ID": final_id})
    ms = int(final_id.partition("-")[0])
    beyond = await chat.client.get(url, headers={"Last-Event-ID": f"{ms + 10**9}-0"})
    as_query = await chat.client.get(f"{url}&lastEventId={final_id}")
    assert (at_final.status_code, beyond.status_code, as_query.status_code) == (204, 204, 204)

    # before the final event: the rest, ending with it, for every reader alike
    first_id = events[0][0]
    assert first_id is not None
    readers = await asyncio.gather(
        *(chat.events(started["sessionId"], last_event_id=first_id) for _ in range(3))
    )
    for read in readers:
        assert read == events[1:]
    garbage = await chat.client.get(url, headers={"Last-Event-ID": "not-an-id"})
    assert garbage.status_code == 422


async def test_an_id_of_another_sessions_reply_does_not_leak_or_break_the_stream(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    one = await chat.start(alice["auth"], model="dev/echo", message="first reply here")
    one_events = await chat.events(one["sessionId"])
    two = await chat.start(alice["auth"], model="dev/echo", message="second reply there")
    two_events = await chat.events(two["sessionId"])
    # one's first id is below all of two's events: two's reader gets all of two, nothing of one
    resumed = await chat.events(two["sessionId"], last_event_id=one_events[0][0])
    assert resumed == two_events
    # two's final id is beyond one's: one has everything
    url = f"/api/chat/stream?sessionId={one['sessionId']}"
    answer = await chat.client.get(url, headers={"Last-Event-ID": two_events[-1][0] or ""})
    assert answer.status_code == 204


async def _next(events: Any) -> Any:
    return await asyncio.wait_for(events.__anext__(), 10)


async def _rest(events: Any) -> list[Any]:
    """The batches left (heartbeats left out), until the iteration ends (at most 20 items)."""
    got: list[Any] = []
    for _ in range(20):
        try:
            item = await _next(events)
        except StopAsyncIteration:
            return got
        if item is not HEARTBEAT:
            got.append(item)
    raise AssertionError(f"the reader did not end: {got}")


async def _resumed_beyond() -> tuple[InMemoryReplyStream, ReadReplyHandler, str, str, Any]:
    """A live reply with one token, and a reader resumed after a (forged) id beyond it, which
    got a heartbeat: (stream, reader, session, the token's id, the reader's events)."""
    stream = InMemoryReplyStream(ManualClock())
    reader = ReadReplyHandler(stream, heartbeat_s=0.01, track_readers=False)
    session = uuid.uuid4().hex
    await stream.begin(session, TTL)
    first = await stream.publish(session, TokenEvent(delta="a"), ttl_seconds=TTL)
    forged = f"{int(first.partition('-')[0]) + 10**9}-0"
    events = reader.events(session, forged)
    assert await _next(events) is HEARTBEAT  # attached while it is generated
    return stream, reader, session, first, events


async def test_a_live_reply_resumed_beyond_its_events_ends_with_its_final_event() -> None:
    stream, reader, session, first, events = await _resumed_beyond()
    final = DoneEvent(
        message_id=uuid.uuid4(), cached=False, prompt_tokens=1, completion_tokens=1,
        finish_reason="stop", cost_usd=0.0, status="complete",
    )  # fmt: skip
    final_id = await stream.publish(session, final, ttl_seconds=TTL)
    assert await _rest(events) == [[(final_id, final)]]

    # resumed exactly at the final event: nothing more (the 204 case)
    at_final = [b async for b in reader.events(session, final_id) if b is not HEARTBEAT]
    assert at_final == []
    # resumed before it: the rest, ending with it
    before = [b async for b in reader.events(session, first) if b is not HEARTBEAT]
    assert before == [[(final_id, final)]]


async def test_a_live_reply_resumed_beyond_its_events_that_dies_ends_interrupted() -> None:
    stream, _, session, _, events = await _resumed_beyond()
    stream.abandon(session)  # its process died: no final event will come
    got = await _rest(events)
    assert [event for batch in got for _, event in batch] == [INTERRUPTED]


async def test_a_live_reply_resumed_beyond_it_ends_with_an_error_final_event() -> None:
    stream = InMemoryReplyStream(ManualClock())
    reader = ReadReplyHandler(stream, heartbeat_s=0.01, track_readers=False)
    session = uuid.uuid4().hex
    await stream.begin(session, TTL)
    first = await stream.publish(session, TokenEvent(delta="a"), ttl_seconds=TTL)
    forged = f"{int(first.partition('-')[0]) + 10**9}-0"
    readers = [reader.events(session, forged) for _ in range(3)]
    for events in readers:
        assert await _next(events) is HEARTBEAT
    final = ErrorEvent(code="provider_error", message="gone")
    final_id = await stream.publish(session, final, ttl_seconds=TTL)
    for events in readers:
        assert await _rest(events) == [[(final_id, final)]]


# --- 2. null unsets a regeneration's parameter ----------------------------------------------------
async def _regenerate(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    again = await chat.client.post("/api/chat/regenerate", json=body, headers=auth)
    assert again.status_code == 201, again.text
    events = await chat.events(again.json()["sessionId"])
    assert events[-1][1] == "done", events
    return dict(chat.provider.requests[-1].body)


_ALL = {
    "temperature": 0.4, "maxTokens": 50, "topP": 0.5, "stop": ["END"], "seed": 3,
    "presencePenalty": 0.5, "frequencyPenalty": 0.25,
}  # fmt: skip
_SENT = {
    "temperature", "max_completion_tokens", "top_p", "stop", "seed", "presence_penalty",
    "frequency_penalty",
}  # fmt: skip


async def test_null_for_every_parameter_unsets_them_all(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    first = await chat.start(
        alice["auth"], model=MODEL, message=f"hi {uuid.uuid4().hex[:6]}", params=_ALL
    )
    await chat.events(first["sessionId"])
    sent = await _regenerate(chat, alice["auth"], chatId=first["chatId"])
    assert sent.keys() >= _SENT, sent
    nulls = {name: None for name in _ALL}
    sent = await _regenerate(chat, alice["auth"], chatId=first["chatId"], params=nulls)
    assert not _SENT & sent.keys(), sent
    # by another model then back: nothing comes back
    await _regenerate(chat, alice["auth"], chatId=first["chatId"], model="dev/echo")
    sent = await _regenerate(chat, alice["auth"], chatId=first["chatId"], model=MODEL)
    assert not _SENT & sent.keys(), sent


async def test_null_in_a_start_and_unknown_fields_in_params(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    made = await preset(chat, alice["auth"], params={"temperature": 0.3, "maxTokens": 40})
    calls = len(chat.provider.requests)
    started = await chat.start(
        alice["auth"], presetId=made["id"], message=f"hey {uuid.uuid4()}", cache=False,
        params={"temperature": None},
    )  # fmt: skip
    await chat.events(started["sessionId"])
    sent = chat.provider.requests[calls].body
    assert (sent["temperature"], sent["max_completion_tokens"]) == (0.3, 40)  # null: unset
    unknown = await chat.client.post(
        "/api/chat/regenerate", headers=alice["auth"],
        json={"chatId": started["chatId"], "params": {"colour": None}},
    )  # fmt: skip
    assert unknown.status_code == 400, unknown.text


async def test_null_unsets_a_parameter_a_preset_would_give_in_a_regeneration(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    made = await preset(chat, alice["auth"], params={"temperature": 0.3, "maxTokens": 40})
    first = await chat.start(alice["auth"], model="dev/echo", message=f"hi {uuid.uuid4()}")
    await chat.events(first["sessionId"])
    sent = await _regenerate(
        chat, alice["auth"], chatId=first["chatId"], presetId=made["id"],
        params={"temperature": None},
    )  # fmt: skip
    assert sent["max_completion_tokens"] == 40
    assert "temperature" not in sent, sent


async def test_the_openapi_schema_of_params_is_still_valid(chat: Chat) -> None:
    answer = await chat.client.get("/api/docs/openapi.json")
    assert answer.status_code == 200, answer.text
    schema = answer.json()
    text = json.dumps(schema)
    assert "Unset" not in text
    components = schema["components"]["schemas"]
    params = next(v for k, v in components.items() if k.endswith("ParamsBody"))
    temperature = json.dumps(params["properties"]["temperature"])
    assert '"number"' in temperature, temperature
    assert '"null"' in temperature, temperature
    assert "required" not in params or not params["required"]


# --- 5. the worker's metrics server ---------------------------------------------------------------
@pytest.fixture
def metrics_server() -> Any:
    server = MetricsServer("127.0.0.1", 0, "scrape-me")
    server.start()
    yield server
    server.stop()


def _url(server: MetricsServer, path: str = "/metrics") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def test_the_worker_metrics_server_checks_its_token_and_paths(metrics_server: Any) -> None:
    good = {"Authorization": "Bearer scrape-me"}
    async with httpx.AsyncClient(timeout=10) as client:
        ok = await client.get(_url(metrics_server), headers=good)
        query = await client.get(_url(metrics_server, "/metrics?name[]=x"), headers=good)
        slash = await client.get(_url(metrics_server, "/metrics/"), headers=good)
        bare = await client.get(_url(metrics_server))
        scheme = await client.get(_url(metrics_server), headers={"Authorization": "scrape-me"})
        longer = await client.get(
            _url(metrics_server), headers={"Authorization": "Bearer scrape-me2"}
        )
        prefix = await client.get(_url(metrics_server), headers={"Authorization": "Bearer scrape"})
        utf8 = await client.get(
            _url(metrics_server), headers={"Authorization": "Bearer scrape-mé".encode()}
        )
        concurrent = await asyncio.gather(
            *(client.get(_url(metrics_server), headers=good) for _ in range(16))
        )
    assert (ok.status_code, query.status_code, slash.status_code) == (200, 200, 404)
    assert ok.headers["content-type"].startswith("text/plain")
    statuses = [r.status_code for r in (bare, scheme, longer, prefix, utf8)]
    assert statuses == [401] * 5
    assert all(r.status_code == 200 and r.text == ok.text[:0] + r.text for r in concurrent)
    assert bare.headers["www-authenticate"] == "Bearer"


async def test_the_worker_metrics_server_answers_head_and_refuses_post_with_405(
    metrics_server: Any,
) -> None:
    good = {"Authorization": "Bearer scrape-me"}
    async with httpx.AsyncClient(timeout=10) as client:
        head = await client.head(_url(metrics_server), headers=good)
        post = await client.post(_url(metrics_server), headers=good)
    assert (head.status_code, post.status_code) == (200, 405)


async def test_the_worker_metrics_server_serves_past_an_idle_connection_and_stops() -> None:
    server = MetricsServer("127.0.0.1", 0, None)  # no token: open
    server.stop()  # stopping one never started is harmless
    server = MetricsServer("127.0.0.1", 0, None)
    server.start()
    port = server.port
    idle = await asyncio.open_connection("127.0.0.1", port)  # says nothing
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert answer.status_code == 200
        await asyncio.wait_for(asyncio.to_thread(server.stop), 10)
        server.stop()  # twice: harmless
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(timeout=10) as client:
                await client.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        idle[1].close()


# --- 6. stream durations --------------------------------------------------------------------------
def _count(metrics: str, metric: str, method: str, route: str) -> float:
    pattern = rf'^{metric}_count\{{method="{method}",route="{re.escape(route)}"\}} (\S+)$'
    found = re.search(pattern, metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def test_streams_count_in_the_stream_histogram_and_204s_in_the_request_one(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model="dev/echo", message="count this stream")

    async def scrape() -> str:
        return (await chat.client.get("/api/metrics")).text

    before = await scrape()
    events = await chat.events(started["sessionId"])
    middle = await scrape()
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    no_content = await chat.client.get(url, headers={"Last-Event-ID": events[-1][0] or ""})
    assert no_content.status_code == 204
    await chat.start_streaming(alice["auth"], model="dev/echo", message="streamed start")
    after = await scrape()

    streams, requests = (
        "whalli_http_stream_duration_seconds",
        "whalli_http_request_duration_seconds",
    )
    route = "/api/chat/stream"
    assert _count(middle, streams, "GET", route) - _count(before, streams, "GET", route) == 1
    assert _count(middle, requests, "GET", route) == _count(before, requests, "GET", route)
    assert _count(after, requests, "GET", route) - _count(middle, requests, "GET", route) == 1
    assert _count(after, streams, "GET", route) == _count(middle, streams, "GET", route)
    start = "/api/chat/start"
    assert _count(after, streams, "POST", start) - _count(middle, streams, "POST", start) == 1
    assert _count(after, requests, "POST", start) == _count(middle, requests, "POST", start)


# --- 4. access token parity -----------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(header: bytes, payload: bytes, secret: bytes = SECRET) -> str:
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


_CLAIMS = (
    f'"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"{uuid.UUID(int=1)}","sid":"{uuid.UUID(int=2)}",'
    f'"jti":"j1","iat":{NOW},"nbf":{NOW},"exp":{NOW + 60},"token_type":"access"'
)
_HEADER = b'{"alg":"HS256","typ":"at+jwt"}'
_PAYLOADS = [
    "{" + _CLAIMS + "}",
    "{" + _CLAIMS + ',"exp":1}',  # duplicate key: the last wins
    "{" + _CLAIMS + f',"exp":{NOW + 60}.0}}',
    "{" + _CLAIMS + ',"iat":true}',
    "{" + _CLAIMS + ',"exp":1e400}',
    "{" + _CLAIMS + ',"exp":NaN}',
    "{" + _CLAIMS + ',"exp":' + "9" * 400 + "}",
    "{" + _CLAIMS + ',"jti":"\u00e9\u2603"}',
    "{" + _CLAIMS + ',"aud":["' + AUDIENCE + '"]}',
    "{" + _CLAIMS + ',"iss":null}',
    "{" + _CLAIMS + ',"sub":"' + str(uuid.UUID(int=1)).upper() + '"}',
    "{" + _CLAIMS + ',"sub":"{' + str(uuid.UUID(int=1)) + '}"}',
    "{" + _CLAIMS + ',"sub":"urn:uuid:' + str(uuid.UUID(int=1)) + '"}',
    "\ufeff{" + _CLAIMS + "}",
    " {" + _CLAIMS + "} ",
    "[" + _CLAIMS.replace(":", ",") + "]",
    "{" + _CLAIMS + ',"token_type":"access\\u0000"}',
]
_HEADERS = [
    _HEADER,
    b'{"alg":"none","typ":"at+jwt","alg":"HS256"}',
    b'{"alg":"HS256","typ":"at+jwt","alg":"none"}',
    b'{"alg":"HS256","typ":"at+jwt","kid":"k1"}',
    b'{"alg":"HS256","typ":"at+jwt","kid":1}',
    b'{"alg":"HS256","typ":"at+jwt","crit":["b64"],"b64":false}',
    b'{"alg":"HS256","typ":"at+jwt","b64":true}',
    b'{"alg":"HS\\u0032\\u0035\\u0036","typ":"at+jwt"}',
    '{"alg":"HS256","typ":"at+jwt","kid":"é"}'.encode(),
    '{"alg":"HS256","typ":"at+jwt"}'.encode("utf-16"),
    b"\xef\xbb\xbf" + _HEADER,
    b'{"alg":"HS256","typ":"AT+JWT"}',
]


def _decision(issuer: Any, token: str) -> str:
    try:
        issuer.verify(token)
    except InvalidToken as e:
        return str(e.details["reason"])
    return "ok"


@pytest.mark.parametrize("payload", _PAYLOADS)
@pytest.mark.parametrize("header", _HEADERS)
def test_unusual_json_is_decided_as_pyjwt_did(header: bytes, payload: str) -> None:
    token = _signed(header, payload.encode())
    assert _decision(TOKENS, token) == oracle(TOKENS, None, token)
    assert _decision(KEYED, token) == oracle(KEYED, "k1", token)


def _variants(token: str) -> list[str]:
    head, body, sig = token.split(".")
    return [
        token, f" {token}", f"{token} ", f"{token}\n", f"{head}.{body}.{sig}=",
        f"{head}=.{body}.{sig}", f"{head}.{body}==.{sig}", f"{head}.{body}.{sig[:-1]}",
        f"{head}.{body}.{sig}A", f"{head}.{body}.{sig.replace('-', '+').replace('_', '/')}",
        f"{head}..{sig}", f"..{sig}", "..", f"{head}.{body}.", f"{head}.{body} .{sig}",
        f"{head}.{body}.{sig[:-1]}{chr(ord(sig[-1]) ^ 1)}",
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(16))
def test_base64_and_whitespace_edges_are_decided_as_pyjwt_did(index: int) -> None:
    for header in (_HEADER, b'{"alg":"HS256","typ":"at+jwt","b64":false,"crit":["b64"]}'):
        for payload in ("{" + _CLAIMS + "}", ""):
            token = _variants(_signed(header, payload.encode()))[index]
            assert _decision(TOKENS, token) == oracle(TOKENS, None, token), token
