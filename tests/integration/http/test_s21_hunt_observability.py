"""Session 21 hunt: observability and secrets, on the real app (uvicorn on loopback, the shared
Postgres, Redis and S3, loopback fake providers).

What is hunted here, beside what ``test_ops_security_hunt.py`` already covers:
- every access line of a 4xx/5xx carries the request id the client sent (and the problem body
  and the ``X-Request-ID`` header say the same); an unhandled exception is a generic 500 whose
  log line has the request id and the traceback, its DSN password redacted;
- chat metrics: one reply read, resumed with ``Last-Event-ID`` and resumed after its end (204)
  is counted once; ``/v1`` (plain and streamed) likewise; the open-SSE gauge comes back to where
  it was; a cache hit adds no provider latency (no provider was called);
- ``/api/metrics`` access control: the scheme is case-insensitive as everywhere else, wrong
  tokens are counted against the caller's IP budget like any other credential guess, and
  production refuses a blank scrape token.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar import get

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import _settings
from tests.integration.http.test_ops_security_hunt import (
    GPT,
    app_logs,
    limited_app,
    logged,
    ops_app,
    scrape,
)
from tests.support.fake_providers import FakeProviderServer, openai_default
from tests.support.live_server import live_server
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.entrypoints.http.app import create_app
from whalli.entrypoints.http.asgi import ContainerApp
from whalli.entrypoints.http.security import PUBLIC


# --- helpers ------------------------------------------------------------------------------------
def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of the series ``name`` with exactly ``labels`` (0 when not there yet)."""
    for line in metrics.splitlines():
        if not line.startswith(name + ("{" if labels else " ")):
            continue
        if labels:
            found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.split("} ")[0]))
            if found != labels:
                continue
        return float(line.rsplit(" ", 1)[1])
    return 0.0


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in logged(path).splitlines():
        if line.strip():
            lines.append(json.loads(line))
    return lines


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    async with (
        FakeProviderServer(openai_default()) as provider,
        ops_app(stack_urls, unique, provider) as chat,
    ):
        yield chat


# --- request ids ----------------------------------------------------------------------------------
async def test_s21b_every_refused_request_is_logged_with_the_request_id_it_was_answered_with(
    hunt: Chat, tmp_path: Path
) -> None:
    chat = hunt
    alice = await chat.world.register("alice")
    sent: dict[str, tuple[str, int]] = {}
    async with app_logs(tmp_path) as path:
        cases = [
            ("GET", f"/api/nothing-{uuid.uuid4().hex}", {}, None, 404),
            ("GET", "/api/models", {}, None, 401),
            ("DELETE", "/api/health", {}, None, 405),
            ("POST", "/api/chat/start", alice["auth"], {"model": 1}, 400),
            ("GET", f"/api/chats/{uuid.uuid4()}", alice["auth"], None, 404),
        ]
        for method, url, headers, body, status in cases:
            rid = f"s21b-{uuid.uuid4().hex}"
            response = await chat.client.request(
                method, url, headers={**headers, "X-Request-ID": rid}, json=body
            )
            assert response.status_code // 100 == status // 100, (url, response.text)
            assert response.headers["x-request-id"] == rid
            if response.headers.get("content-type") == "application/problem+json":
                assert response.json()["requestId"] == rid
            sent[rid] = (url, response.status_code)
    access = {
        line["request_id"]: line["status"]
        for line in log_lines(path)
        if line.get("event") == "request" and "request_id" in line
    }
    assert {rid: access.get(rid) for rid in sent} == {rid: s for rid, (_, s) in sent.items()}


async def test_s21b_an_unhandled_exception_is_a_generic_500_logged_with_its_request_id(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    marker = f"boom-{uuid.uuid4().hex}"

    @get("/api/s21b-boom", opt=PUBLIC, sync_to_thread=False)
    def boom() -> None:
        raise RuntimeError(f"{marker}: postgresql://whalli:{password}@db.internal:5432/whalli")

    settings = _settings(stack_urls, unique)
    container = build_container(settings)
    app = create_app(ContainerApp(container), extra_route_handlers=[boom])
    rid = f"s21b-{uuid.uuid4().hex}"
    async with app_logs(tmp_path) as path, live_server(app) as client:
        response = await client.get("/api/s21b-boom", headers={"X-Request-ID": rid})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["requestId"] == rid
    for leaked in ("Traceback", marker, password, "RuntimeError"):
        assert leaked not in response.text
    lines = [line for line in log_lines(path) if line.get("request_id") == rid]
    failed = [line for line in lines if line.get("event") == "unhandled exception"]
    assert failed, lines
    assert marker in failed[0]["exception"]  # the traceback is in the log...
    assert password not in logged(path)  # ...the DSN's password is not
    assert [line["status"] for line in lines if line.get("event") == "request"] == [500]


# --- chat metrics ---------------------------------------------------------------------------------
async def test_s21b_a_reply_read_resumed_and_resumed_after_its_end_is_counted_once(
    hunt: Chat,
) -> None:
    chat = hunt
    alice = await chat.world.register("alice")
    labels = {"model": GPT, "provider": "openai"}
    before = await scrape(chat.client)
    started = await chat.start(alice["auth"], model=GPT, message=f"q {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events
    usage = events[-1][2]["usage"]
    # resumed from the first event, then after the last one (204: nothing to stream)
    again = await chat.events(started["sessionId"], last_event_id=events[0][0])
    assert again[-1][1] == "done"
    ended = await chat.client.get(
        f"/api/chat/stream?sessionId={started['sessionId']}",
        headers={"Last-Event-ID": events[-1][0] or ""},
    )
    assert ended.status_code == 204
    after = await scrape(chat.client)

    def added(name: str, **more: str) -> float:
        return sample(after, name, **labels, **more) - sample(before, name, **labels, **more)

    assert added("whalli_chat_requests_total", status="complete") == 1
    assert added("whalli_chat_tokens_total", kind="prompt") == usage["promptTokens"]
    assert added("whalli_chat_tokens_total", kind="completion") == usage["completionTokens"]
    name = "whalli_sse_connections_active"
    assert sample(after, name) == sample(before, name)


async def test_s21b_v1_replies_plain_and_streamed_are_counted_once_each(hunt: Chat) -> None:
    chat = hunt
    alice = await chat.world.register("alice")
    made = await chat.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
    v1_auth = {"Authorization": f"Bearer {made.json()['secret']}"}
    labels = {"model": GPT, "provider": "openai", "status": "complete"}
    before = await scrape(chat.client)
    ask = {"model": GPT, "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}]}
    plain = await chat.client.post("/v1/chat/completions", json=ask, headers=v1_auth)
    assert plain.status_code == 200, plain.text
    streamed_ask = {
        **ask, "stream": True, "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}],
    }  # fmt: skip
    streamed = await chat.client.post("/v1/chat/completions", json=streamed_ask, headers=v1_auth)
    assert streamed.status_code == 200
    assert "[DONE]" in streamed.text
    after = await scrape(chat.client)
    added = sample(after, "whalli_chat_requests_total", **labels) - sample(
        before, "whalli_chat_requests_total", **labels
    )
    assert added == 2
    gauge = "whalli_sse_connections_active"
    assert sample(after, gauge) == sample(before, gauge)


async def test_s21b_a_cache_hit_adds_no_observation_to_the_providers_latency_histograms(
    hunt: Chat,
) -> None:
    chat = hunt
    alice = await chat.world.register("alice")
    prompt = f"cache me {uuid.uuid4()}"
    first = await chat.start(alice["auth"], model=GPT, message=prompt)
    assert (await chat.events(first["sessionId"]))[-1][2]["cached"] is False
    calls = len(chat.provider.requests)
    before = await scrape(chat.client)
    again = await chat.start(alice["auth"], model=GPT, message=prompt)
    assert (await chat.events(again["sessionId"]))[-1][2]["cached"] is True
    after = await scrape(chat.client)
    assert len(chat.provider.requests) == calls  # the provider was not asked
    hits = sample(after, "whalli_chat_cache_hits_total") - sample(
        before, "whalli_chat_cache_hits_total"
    )
    assert hits == 1
    for histogram in ("whalli_chat_ttft_seconds_count", "whalli_chat_reply_seconds_count"):
        added = sample(after, histogram, provider="openai") - sample(
            before, histogram, provider="openai"
        )
        assert added == 0, histogram


# --- /api/metrics access control --------------------------------------------------------------
@asynccontextmanager
async def token_app(
    stack_urls: StackUrls, unique: str, token: str, **env: str
) -> AsyncIterator[Chat]:
    async with ops_app(stack_urls, unique, WHALLI_METRICS_TOKEN=token, **env) as chat:
        yield chat


async def test_s21b_the_scrape_token_is_accepted_with_any_case_of_the_bearer_scheme(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    token = f"scrape-{uuid.uuid4().hex}"
    async with token_app(stack_urls, unique, token) as chat:
        alice = await chat.world.register("alice")
        access = alice["tokens"]["accessToken"]
        api = await chat.client.get("/api/models", headers={"Authorization": f"bearer {access}"})
        assert api.status_code == 200, api.text  # the API takes the scheme in any case
        exact = await chat.client.get("/api/metrics", headers={"Authorization": f"Bearer {token}"})
        assert exact.status_code == 200
        lower = await chat.client.get("/api/metrics", headers={"Authorization": f"bearer {token}"})
    assert lower.status_code == 200, lower.text


async def test_s21b_wrong_scrape_tokens_are_counted_against_the_callers_ip_budget(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    token = f"scrape-{uuid.uuid4().hex}"

    def address() -> str:
        n = uuid.uuid4().int
        return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}"

    async with limited_app(
        stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="3", WHALLI_TRUSTED_PROXIES="127.0.0.1",
        WHALLI_METRICS_TOKEN=token,
    ) as client:  # fmt: skip
        # the budget is real: a fourth wrong API key from one address is a 429
        guesser = {"X-Forwarded-For": address()}
        keys = [
            (await client.get("/api/models", headers={**guesser, "X-API-Key": "wrong"})).status_code
            for _ in range(4)
        ]
        assert keys == [401, 401, 401, 429]
        scraper = {"X-Forwarded-For": address()}
        guesses = [
            (
                await client.get(
                    "/api/metrics", headers={**scraper, "Authorization": f"Bearer guess{i}"}
                )
            ).status_code
            for i in range(6)
        ]
        right = await client.get(
            "/api/metrics",
            headers={"X-Forwarded-For": address(), "Authorization": f"Bearer {token}"},
        )
    assert right.status_code == 200
    assert 429 in guesses, guesses


def test_s21b_production_refuses_a_blank_metrics_token() -> None:
    from whalli.config import ConfigError, load_settings

    env = {
        "WHALLI_ENV": "production", "WHALLI_JWT_SECRET": "j" * 40,
        "WHALLI_DATABASE_URL": "postgresql://whalli:pw@db.example:5432/whalli",
        "WHALLI_REDIS_URL": "redis://redis.example:6379/0",
        "WHALLI_S3_ENDPOINT": "http://minio.example:9000", "WHALLI_S3_ACCESS_KEY": "a",
        "WHALLI_S3_SECRET_KEY": "b",
    }  # fmt: skip
    load_settings({**env, "WHALLI_METRICS_TOKEN": f"tok-{uuid.uuid4().hex}"}, dotenv=None)
    with pytest.raises(ConfigError, match="WHALLI_METRICS_TOKEN"):
        load_settings({**env, "WHALLI_METRICS_TOKEN": "   "}, dotenv=None)


# --- secrets --------------------------------------------------------------------------------------
async def test_s21b_credentials_in_an_unreachable_providers_base_url_stay_out_of_answers_and_log(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """An OpenAI-compatible server behind basic auth in its URL (``https://user:pw@host/v1``),
    down: the failure reaches the caller and the log (with its traceback), the password not."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    password = f"pw{uuid.uuid4().hex}"
    base_url = f"http://proxyuser:{password}@127.0.0.1:{port}/v1"
    async with (
        app_logs(tmp_path) as path,
        ops_app(stack_urls, unique, WHALLI_OPENAI_BASE_URL=base_url) as chat,
    ):
        alice = await chat.world.register("alice")
        made = await chat.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
        v1_auth = {"Authorization": f"Bearer {made.json()['secret']}"}
        ask = {"model": GPT, "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}]}
        v1 = await chat.client.post("/v1/chat/completions", json=ask, headers=v1_auth)
        started = await chat.start(alice["auth"], model=GPT, message=f"q {uuid.uuid4()}")
        events = await chat.events(started["sessionId"])
        read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    assert v1.status_code == 502, v1.text
    assert events[-1][1] == "error", events
    text = logged(path)
    assert '"request failed"' in text  # the 502 was logged, traceback included
    for where, said in {
        "v1": v1.text,
        "event": str(events),
        "chat": read.text,
        "log": text,
    }.items():
        assert password not in said, where
