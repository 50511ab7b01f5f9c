"""Hunt S26: the streamed POST /v1/chat/completions served below Litestar (completion_route.py),
attacked as a second path around the app's guard: whatever it answers, and whatever it hands to
the Litestar route, must be answered and counted as the route alone would (``litestar_only``)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http import test_completion_route as parity
from tests.unit.http.accounts import PASSWORD, seed_caller
from tests.unit.http.fakes import FakeContainer, FakeProbe
from tests.unit.http.test_completion_route import (
    Seen,
    chat,
    comparable_body,
    comparable_headers,
    post,
)
from whalli.config import Settings
from whalli.domain.model.users import Role
from whalli.entrypoints.http.completion_route import COMPLETIONS_PATH
from whalli.ports.chat_model import CompletionRequest, StreamDelta, StreamEnd, StreamEvent

Client = AsyncTestClient[Litestar]
Message = dict[str, Any]
ORIGIN = "https://app.example"
# test_completion_route.py's fixtures: the route alone, the caller's key, what reached Litestar
litestar_only, key, seen = parity.litestar_only, parity.key, parity.seen


@pytest.fixture
def container(probes: list[FakeProbe]) -> FakeContainer:
    # a short heartbeat: a stream whose first event is late opens soon (first_event.py)
    return FakeContainer(Settings(env="test", chat_heartbeat_s=0.05, cors_origins=ORIGIN), probes)


class Exchange:
    """One request straight to an ASGI app, as a server runs it: the body in ``parts``, then
    the client stays until the response ends (or leaves: ``leave_mid_body``, ``leave_after``
    body messages received)."""

    def __init__(
        self,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        *,
        leave_mid_body: bool = False,
        leave_after: int | None = None,
        length: bool = True,
    ) -> None:
        framing = (b"content-length", str(len(body)).encode()) if length else (
            b"transfer-encoding", b"chunked"
        )  # fmt: skip
        self.headers = [framing, *headers]
        half = len(body) // 2
        self.parts = [body[:half]] if leave_mid_body else [body[:half], body[half:]]
        self.leave_mid_body, self.leave_after = leave_mid_body, leave_after
        self.sent: list[Message] = []
        self.received = 0
        self.gone = asyncio.Event()

    async def run(self, app: Any) -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": COMPLETIONS_PATH,
            "raw_path": COMPLETIONS_PATH.encode(), "root_path": "", "query_string": b"",
            "headers": self.headers, "client": ("127.0.0.1", 1),
            "server": ("testserver", 80), "extensions": {}, "state": {},
        }  # fmt: skip
        await app(scope, self.receive, self.send)

    async def receive(self) -> Message:
        self.received += 1
        if self.parts:
            part = self.parts.pop(0)
            more = bool(self.parts) or self.leave_mid_body
            if not self.parts and self.leave_mid_body:
                self.gone.set()
            return {"type": "http.request", "body": part, "more_body": more}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        bodies = [m for m in self.sent if m["type"] == "http.response.body"]
        ended = message["type"] == "http.response.body" and not message.get("more_body")
        if ended or (self.leave_after is not None and len(bodies) >= self.leave_after):
            self.gone.set()  # (as uvicorn: once the response ended, receive() says gone)

    def starts(self) -> list[int]:
        return [m["status"] for m in self.sent if m["type"] == "http.response.start"]

    def head(self) -> dict[bytes, bytes]:
        [start] = [m for m in self.sent if m["type"] == "http.response.start"]
        return dict(start["headers"])

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


class Failing:
    """``dev``'s model: one word, then an error no adapter should raise (a bug's)."""

    provider = "dev"

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        yield StreamDelta(text="Hello")
        await asyncio.sleep(0)
        raise RuntimeError("a bug in an adapter")


class Endless:
    """``dev``'s model: words until the stream is closed (then ``closed``), as a provider's."""

    provider = "dev"

    def __init__(self) -> None:
        self.closed = 0

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        try:
            while True:
                await asyncio.sleep(0)
                yield StreamDelta(text="word ")
        finally:
            self.closed += 1
        yield StreamEnd(finish_reason="stop")  # pragma: no cover


class Silent:
    """``dev``'s model: no first event until the stream is closed (a model thinking)."""

    provider = "dev"

    def __init__(self) -> None:
        self.closed = 0

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        try:
            await asyncio.Event().wait()
        finally:
            self.closed += 1
        yield StreamEnd(finish_reason="stop")  # pragma: no cover


def body_of(**extra: Any) -> bytes:
    return msgspec.json.encode(chat(**extra))


async def remaining(client: Client, key: str) -> int:
    """The caller's budget left, read from a request counted against it (which spends one)."""
    answer = await client.get("/v1/models", headers={"X-API-Key": key})
    assert answer.status_code == 200
    return int(answer.headers["ratelimit-remaining"])


async def failed(client: Client) -> float:
    """How many /v1 completions the metrics counted as answered 500 (in this process)."""
    metrics = (await client.get("/api/metrics")).text
    label = 'whalli_http_requests_total{method="POST",route="/v1/chat/completions",status="500"}'
    lines = [line for line in metrics.splitlines() if line.startswith(label)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


async def test_an_error_after_the_stream_opened_ends_it_without_a_second_response_start(
    client: Client, litestar_only: Client, container: FakeContainer, key: str
) -> None:
    container.models["dev"] = Failing()
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {key}".encode())]
    failed_before = await failed(client)
    for app in (client.app, litestar_only.app):
        exchange = Exchange(body_of(), headers)
        with pytest.raises(Exception, match=r"after response started|a bug in an adapter"):
            await exchange.run(app)

        assert exchange.starts() == [200]  # one start: the error cannot be a new response
        assert b'"content":"Hello"' in exchange.body()
    assert await failed(client) == failed_before  # counted as what the client got: a 200


async def test_a_client_leaving_while_its_body_is_read_is_counted_once_as_the_route_counts_it(
    client: Client, litestar_only: Client, key: str
) -> None:
    headers = [(b"content-type", b"application/json"), (b"x-api-key", key.encode())]
    spent, answered = [], []
    for app in (client.app, litestar_only.app):
        before = await remaining(client, key)
        exchange = Exchange(body_of(), headers, leave_mid_body=True)
        await exchange.run(app)
        spent.append(before - await remaining(client, key) - 1)  # (the probe spends one)
        answered.append(exchange.starts())

    assert spent == [1, 1]  # the route's guard counts it before reading the body
    assert answered[0] == answered[1]


async def test_a_request_without_a_credential_is_refused_before_its_body_is_read(
    client: Client, litestar_only: Client
) -> None:
    for headers in (
        [],
        [(b"authorization", b"Basic eDp5")],
        [(b"authorization", b"Bearer a"), (b"x-api-key", b"b")],
    ):
        answers = []
        for app in (client.app, litestar_only.app):
            exchange = Exchange(
                body_of(), [(b"content-type", b"application/json"), *headers],
                leave_mid_body=True,
            )  # fmt: skip
            await exchange.run(app)
            answers.append((exchange.starts(), exchange.received))

        assert answers == [([401], 0)] * 2  # as the guard: before the body


async def test_a_spent_budget_is_refused_as_the_route_refuses_it(
    client: Client, litestar_only: Client, container: FakeContainer, key: str
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    ada = next(iter(container.store.tables["users"].values()))
    limits = await container.request_limits()
    for _ in range(limits.policy.per_user.limit):
        await limits.check_request(ada.id, "127.0.0.1")

    fast, fast_body = await post(client, chat(), headers)
    slow, slow_body = await post(litestar_only, chat(), headers)

    assert fast.status_code == slow.status_code == 429
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert fast.headers["retry-after"] == slow.headers["retry-after"]
    assert fast.headers["ratelimit-remaining"] == slow.headers["ratelimit-remaining"] == "0"
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)


@pytest.mark.parametrize("ended", ["signed out", "account disabled"])
async def test_an_access_token_that_ended_is_refused_as_the_route_refuses_it_and_counted_once(
    client: Client, litestar_only: Client, container: FakeContainer, key: str, ended: str
) -> None:
    ada = next(iter(container.store.tables["users"].values()))
    login = await client.post("/api/auth/login", json={"email": ada.email, "password": PASSWORD})
    tokens = login.json()
    if ended == "signed out":
        out = await client.post("/api/auth/logout", json={"refreshToken": tokens["refreshToken"]})
        assert out.status_code == 204
    else:
        root = await seed_caller(container, client, "root", role=Role.ADMIN)
        patched = await root.call_signed_in(
            "PATCH", f"/api/admin/users/{ada.id}", {"disabled": True}
        )
        assert patched.status_code == 200, patched.text
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    limits = await container.request_limits()
    user_before = (await limits.check_request(ada.id, "127.0.0.1")).remaining

    fast, fast_body = await post(client, chat(), headers)
    slow, slow_body = await post(litestar_only, chat(), headers)

    assert fast.status_code == slow.status_code == 401
    assert fast.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
    # each counted once, against the client's address; the ended credential's user refunded
    ip_spent = int(fast.headers["ratelimit-remaining"]) - int(slow.headers["ratelimit-remaining"])
    assert ip_spent == 1
    user_after = (await limits.check_request(ada.id, "127.0.0.1")).remaining
    assert user_after == user_before - 1  # (that check's own)


@pytest.mark.parametrize(("model", "leave_after"), [(Endless, 2), (Silent, 1)])
async def test_a_client_leaving_mid_stream_or_before_the_first_event_leaves_nothing_running(
    client: Client, litestar_only: Client, container: FakeContainer, key: str,
    model: type[Endless | Silent], leave_after: int,
) -> None:  # fmt: skip
    ada = next(iter(container.store.tables["users"].values()))
    headers = [(b"content-type", b"application/json"), (b"x-api-key", key.encode())]
    for app in (client.app, litestar_only.app):
        provider = container.models["dev"] = model()
        exchange = Exchange(body_of(), headers, leave_after=leave_after)
        await exchange.run(app)  # quietly

        assert exchange.starts() == [200]
        assert provider.closed == 1  # the provider's request closed
    records = list(container.store.tables["usage_records"].values())
    assert [r.user_id for r in records] == ([ada.id] * 2 if model is Endless else [])


def image() -> dict[str, Any]:
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNg"
    png += "YGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
    part = {"type": "image_url", "image_url": {"url": png}}
    return chat(messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}, part]}])


@pytest.mark.parametrize(
    ("body", "headers", "status", "here"),
    [
        (body_of(), {"Content-Type": "application/json; charset=utf-8"}, 200, True),
        (body_of(), {"Content-Type": "Application/JSON ;charset=UTF-8"}, 200, True),
        (body_of(), {"Origin": ORIGIN}, 200, True),
        (body_of(), {"Cache-Control": "no-cache"}, 200, True),
        (body_of(), {"Expect": "100-continue"}, 200, False),
        (body_of(), {"Content-Encoding": "identity"}, 200, False),
        (body_of(), {"Content-Encoding": "gzip"}, 415, False),
        (body_of()[:-1] + b',"stream":false,"stream":true}', {}, 200, True),
        (body_of()[:-1] + b',"stream":true,"stream":false}', {}, 200, False),
        (body_of()[:-1] + b',"seed":18446744073709551616}', {}, 400, False),
        (body_of(max_tokens=1e2), {}, 400, False),
        (body_of(n=1, stream_options={"include_usage": False}), {}, 200, True),
        (body_of(tools=[{"type": "function", "function": {"name": "f"}}]), {}, 400, True),
        (body_of(response_format={"type": "json_object"}), {}, 400, True),
        (msgspec.json.encode(image()), {}, 400, True),
        (b"\xef\xbb\xbf" + body_of(), {}, 400, False),
        (b"", {}, 400, False),
    ],
)
async def test_unusual_requests_are_answered_as_the_route_answers_them(
    client: Client, litestar_only: Client, seen: Seen, key: str,
    body: Any, headers: dict[str, str], status: int, here: bool,
) -> None:  # fmt: skip
    sent = {"Content-Type": "application/json", "X-API-Key": key, **headers}
    answers = []
    for where in (client, litestar_only):
        answers.append(await post(where, body, sent))
    (fast, fast_body), (slow, slow_body) = answers

    assert fast.status_code == slow.status_code == status, fast_body
    assert comparable_headers(fast.headers) == comparable_headers(slow.headers)
    assert comparable_body(fast_body, fast) == comparable_body(slow_body, slow)
    assert seen.paths == ([] if here or status == 415 else [COMPLETIONS_PATH])


@pytest.mark.parametrize(
    ("headers", "length", "here"),
    [
        ([], False, False),  # chunked: no Content-Length
        ([(b"content-length", b"3")], True, False),
        ([(b"content-type", b"text/plain")], True, False),
        ([(b"authorization", b"Bearer whk_x")], True, False),
        ([(b"x-api-key", b"")], True, False),
        ([(b"cache-control", b"max-age=0"), (b"cache-control", b"no-cache")], True, True),
    ],
)
async def test_headers_an_http_client_would_not_send_are_answered_as_the_route_answers_them(
    client: Client, litestar_only: Client, seen: Seen, key: str,
    headers: list[tuple[bytes, bytes]], length: bool, here: bool,
) -> None:  # fmt: skip
    sent = [(b"content-type", b"application/json"), (b"x-api-key", key.encode()), *headers]
    answers = []
    for app in (client.app, litestar_only.app):
        exchange = Exchange(body_of(temperature=0), sent, length=length)
        await exchange.run(app)
        body = exchange.body().replace(exchange.head()[b"x-request-id"], b"")
        body = re.sub(rb"chatcmpl-[0-9a-f]{32}", b"chatcmpl-ID", body)
        answers.append((exchange.starts(), re.sub(rb'"created":\d+', b"", body)))

    assert answers[0] == answers[1]
    assert seen.paths == ([] if here else [COMPLETIONS_PATH])


async def test_a_no_cache_in_a_second_cache_control_line_keeps_the_prompt_cache_out(
    client: Client, litestar_only: Client, container: FakeContainer, key: str
) -> None:
    lines = [(b"cache-control", b"max-age=60"), (b"cache-control", b"no-cache")]
    sent = [(b"content-type", b"application/json"), (b"x-api-key", key.encode()), *lines]
    for app in (client.app, client.app, litestar_only.app, litestar_only.app):
        exchange = Exchange(body_of(temperature=0), sent)
        await exchange.run(app)
        assert exchange.starts() == [200]

    assert container.chat_metrics.cache == {}  # neither looked up nor stored
    records = container.store.tables["usage_records"].values()
    assert [r.cached for r in records] == [False] * 4
