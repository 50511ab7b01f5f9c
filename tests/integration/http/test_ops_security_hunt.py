"""Operations and security promises, hunted on the real app (uvicorn on loopback, the shared
Postgres, Redis and S3, loopback fake providers).

What was hunted and how:
- secrets in logs: the app's own log setup (``configure_logging`` at debug, to a file) is
  installed around real requests (register, login, password change, refresh, API keys as
  Bearer and X-API-Key, chat session ids and reader passes in ``?sessionId=``, share tokens
  in ``/api/shared/{token}``, OAuth codes, provider keys echoed by a provider, DSNs with
  passwords), then the written log lines are searched for each secret value;
- metrics: ``/api/metrics`` is scraped before and after clients send invented paths, methods,
  ``/v1`` models and imported model names; the label values of each series must not grow with
  them, nor carry emails or prompt text; the scrape token is honoured when set;
- health: an app of our own pointed at a closed port for Redis or Postgres (the shared
  services are never touched) must answer readiness 503 and liveness 200;
- rate limits: a 429 is a problem with ``Retry-After``; ``X-Forwarded-For`` from an untrusted
  peer must not buy a fresh per-IP allowance;
- SSRF: a ``/v1`` image URL pointing at a loopback listener must never be fetched by Whalli;
  OAuth sends the browser only to the configured web app, whatever ``Host`` says;
- error bodies never carry a traceback;
- the operator's side: every series that ``infra/prometheus/alerts.yml`` and the Grafana
  dashboard query must be one the code exports, the latency alert must leave SSE routes out
  as its comment says, and the open-stream gauges must come back down when clients leave;
  production refuses to start without its metrics token and JWT secret.

Rate-limit tests run uvicorn as ``whalli serve`` does (its own proxy-header handling off):
the shared test helper keeps uvicorn's default, which believes X-Forwarded-For from loopback.

Kept as a regression suite: it found five defects, fixed since: a provider's key of any shape
echoed in its error reached the caller; rating an imported reply made a metric series per
invented model name; the dead-letter alert and worker panels queried a series nobody exports;
the latency alert counted the SSE file feed as a slow request; a fullwidth spelling of an email
got a fresh per-account sign-in budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import PASSWORD, World, _settings
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    Reply,
    openai_default,
    openai_error,
)
from tests.support.live_server import live_server
from tests.unit.test_chatgpt_export import T, conversation, message
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.structlog.logging import LOG_FILE_NAME, configure_logging, reset_logging
from whalli.container import build_container
from whalli.entrypoints.http.asgi import build_app

GPT = "openai/gpt-4o-mini"


# --- helpers ------------------------------------------------------------------------------------
@asynccontextmanager
async def ops_app(
    stack_urls: StackUrls, unique: str, provider: FakeProviderServer | None = None, **env: str
) -> AsyncIterator[Chat]:
    """The real app on uvicorn with ``env`` over the test settings (any of them overridable,
    the provider key included)."""
    overrides: dict[str, str] = {"WHALLI_PROVIDER_MAX_ATTEMPTS": "1"}
    if provider is not None:
        overrides |= {"WHALLI_OPENAI_API_KEY": API_KEY, "WHALLI_OPENAI_BASE_URL": provider.url}
    settings = _settings(stack_urls, unique, **(overrides | env))
    container = build_container(settings)
    async with live_server(build_app(settings, container)) as client:
        yield Chat(World(client, container), provider)  # type: ignore[arg-type]


@asynccontextmanager
async def app_logs(tmp_path: Path) -> AsyncIterator[Path]:
    """The app's logging (JSON lines, debug level) into ``tmp_path``; the file to read after."""
    configure_logging("debug", str(tmp_path))
    try:
        yield tmp_path / LOG_FILE_NAME
    finally:
        reset_logging()


def logged(path: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in path.parent.iterdir() if p.is_file())


def leaked(text: str, secrets: dict[str, str]) -> dict[str, str]:
    """The secrets found in ``text``, with the line that holds each (shortened)."""
    found: dict[str, str] = {}
    for name, secret in secrets.items():
        for line in text.splitlines():
            if secret in line:
                found[name] = line[:400]
                break
    return found


async def scrape(client: httpx.AsyncClient, **headers: str) -> str:
    response = await client.get("/api/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return response.text


def label_values(metrics: str, metric: str, label: str) -> set[str]:
    pattern = re.compile(rf'^{metric}\{{[^}}]*\b{label}="((?:[^"\\]|\\.)*)"', re.M)
    return set(pattern.findall(metrics))


async def chat_reply(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    started = await chat.start(auth, model=body.pop("model", "dev/echo"), **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events
    return started


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Chat]:
    async with (
        FakeProviderServer(openai_default()) as provider,
        ops_app(stack_urls, unique, provider) as chat,
    ):
        yield chat


# --- secrets in logs ----------------------------------------------------------------------------
async def test_credentials_of_the_account_flows_never_reach_the_log(
    hunt: Chat, tmp_path: Path
) -> None:
    chat = hunt
    new_password = f"a much better password {uuid.uuid4().hex[:8]}"
    wrong_password = f"wrong horse {uuid.uuid4().hex[:8]}"
    async with app_logs(tmp_path) as path:
        alice = await chat.world.register("alice")
        tokens = alice["tokens"]
        await chat.client.post(
            "/api/auth/login", json={"email": alice["email"], "password": wrong_password}
        )
        await chat.client.post(
            "/api/auth/register", json={"email": "not-an-email", "password": wrong_password}
        )
        refreshed = await chat.client.post(
            "/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        # the spent token again, past any grace: refused
        await chat.client.post(
            "/api/auth/refresh", json={"refreshToken": "x" + tokens["refreshToken"]}
        )
        bearer = {"Authorization": f"Bearer {refreshed.json()['accessToken']}"}
        key = await chat.client.post("/api/keys", json={"name": "ci"}, headers=bearer)
        assert key.status_code == 201, key.text
        secret_key = key.json()["secret"]
        assert (await chat.client.get("/api/models", headers={"X-API-Key": secret_key})).is_success
        bad_key = secret_key[:-4] + "abcd"
        await chat.client.get("/api/models", headers={"X-API-Key": bad_key})
        await chat.client.get("/api/models", headers={"Authorization": f"Bearer {bad_key}"})
        await chat.client.get("/api/models", headers={"Authorization": f"Bearer {secret_key}x"})
        changed = await chat.client.post(
            "/api/auth/password",
            json={"currentPassword": PASSWORD, "newPassword": new_password},
            headers=bearer,
        )
        assert changed.status_code == 200, changed.text
        pair = changed.json()
        await chat.client.post(
            "/api/auth/password",
            json={"currentPassword": wrong_password, "newPassword": new_password + "!"},
            headers={"Authorization": f"Bearer {pair['accessToken']}"},
        )
        await chat.client.post("/api/auth/logout", json={"refreshToken": pair["refreshToken"]})
    text = logged(path)
    assert '"route"' in text  # the requests were logged
    secrets = {
        "password": PASSWORD, "new password": new_password, "wrong password": wrong_password,
        "access token": tokens["accessToken"], "refresh token": tokens["refreshToken"],
        "refreshed access": refreshed.json()["accessToken"],
        "refreshed refresh": refreshed.json()["refreshToken"], "api key": secret_key,
        "bad api key": bad_key,
        "changed refresh": pair["refreshToken"],
    }  # fmt: skip
    settings = chat.world.container.settings()
    for name in ("jwt_secret", "s3_secret_key", "openai_api_key"):
        value = getattr(settings, name)
        secrets[name] = value.reveal()
    assert leaked(text, secrets) == {}


async def test_session_ids_reader_passes_and_share_tokens_never_reach_the_log(
    hunt: Chat, tmp_path: Path
) -> None:
    """They are credentials carried in a query string or a path, which access logs love."""
    chat = hunt
    gate = asyncio.Event()
    from tests.support.fake_providers import openai_stream

    async with app_logs(tmp_path) as path:
        alice = await chat.world.register("alice")
        done = await chat_reply(chat, alice["auth"], message=f"hi {uuid.uuid4()}")
        chat_id = done["chatId"]
        # a reply held half-way: its chat hands out a reader pass
        chat.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=1))
        held = await chat.start(
            alice["auth"], model=GPT, message=f"hold {uuid.uuid4()}", chatId=chat_id
        )
        read = await chat.client.get(f"/api/chats/{chat_id}", headers=alice["auth"])
        reader_pass = read.json()["messages"][-1]["sessionId"]
        assert reader_pass, read.text
        assert reader_pass != held["sessionId"]
        streaming = asyncio.ensure_future(chat.events(reader_pass, headers=alice["auth"]))
        await asyncio.sleep(0.2)
        gate.set()
        events = await streaming
        assert events[-1][1] == "done", events
        await chat.events(held["sessionId"])
        # after the end, a resume answers 204; a wrong session 404; a too long one 422
        await chat.client.get(
            f"/api/chat/stream?sessionId={held['sessionId']}",
            headers={"Last-Event-ID": events[-1][0] or "x"},
        )
        await chat.client.get(f"/api/chat/stream?sessionId={held['sessionId']}x")
        await chat.client.get(f"/api/chat/stream?sessionId={held['sessionId'] * 20}")
        await chat.client.post(f"/api/chat/sessions/{held['sessionId']}/stop", headers={})
        await chat.client.post(
            f"/api/chat/sessions/{held['sessionId']}/stop", headers=alice["auth"]
        )
        shared = await chat.client.post(f"/api/chats/{chat_id}/shares", headers=alice["auth"])
        assert shared.status_code == 201, shared.text
        url = shared.json()["url"]
        token = url.rsplit("/", 1)[-1]
        assert (await chat.client.get(url)).status_code == 200
        await chat.client.get(url + "x")
        await chat.client.get(f"/api/shared/{token}/nothing-here")
        await chat.client.delete(
            f"/api/chats/{chat_id}/shares/{shared.json()['id']}", headers=alice["auth"]
        )
        await chat.client.get(url)
    text = logged(path)
    secrets = {
        "session id": held["sessionId"], "first session id": done["sessionId"],
        "reader pass": reader_pass, "share token": token,
    }  # fmt: skip
    assert leaked(text, secrets) == {}


# --- health ---------------------------------------------------------------------------------------
def closed_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_readiness_is_503_and_liveness_200_while_redis_is_unreachable(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    password = f"redis-pw-{uuid.uuid4().hex}"
    redis_url = f"redis://:{password}@127.0.0.1:{closed_port()}/0"
    async with (
        app_logs(tmp_path) as path,
        ops_app(stack_urls, unique, WHALLI_REDIS_URL=redis_url) as chat,
    ):
        live = await chat.client.get("/api/health")
        ready = await chat.client.get("/api/health/ready")
        models = await chat.client.get("/api/models")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert ready.status_code == 503, ready.text
    assert ready.json()["redis"] != "ok"
    assert ready.json()["postgres"] == "ok"
    assert password not in ready.text
    # the rate limits fail open (the default) and the route answers its own 401
    assert models.status_code == 401, models.text
    assert password not in logged(path)


async def test_readiness_is_503_and_liveness_200_while_postgres_is_unreachable(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    password = f"pg-pw-{uuid.uuid4().hex}"
    database_url = f"postgresql://whalli:{password}@127.0.0.1:{closed_port()}/whalli"
    async with (
        app_logs(tmp_path) as path,
        ops_app(stack_urls, unique, WHALLI_DATABASE_URL=database_url) as chat,
    ):
        live = await chat.client.get("/api/health")
        ready = await chat.client.get("/api/health/ready")
        login = await chat.client.post(
            "/api/auth/login", json={"email": "a@example.com", "password": PASSWORD}
        )
        new_password = f"fresh password {uuid.uuid4().hex}"
        register = await chat.client.post(
            "/api/auth/register",
            json={"email": f"n-{unique}@example.com", "password": new_password},
        )
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert ready.status_code == 503, ready.text
    assert ready.json()["postgres"] != "ok"
    assert ready.json()["redis"] == "ok"
    assert password not in ready.text
    assert login.status_code == 503, login.text
    assert login.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in login.text
    assert password not in login.text
    assert register.status_code == 503, register.text
    text = logged(path)
    assert '"service unavailable"' in text  # the failures were logged...
    assert [s for s in (password, PASSWORD, new_password) if s in text] == []  # ...no secret


# --- provider keys ------------------------------------------------------------------------------
async def test_a_provider_key_echoed_in_a_refusal_reaches_neither_the_caller_nor_the_log(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A self-hosted OpenAI-compatible server's key need not look like ``sk-…``; a provider
    that quotes it back in a 400 must not hand the operator's key to every user."""
    key = f"vllm-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    refusal = openai_error(f"Invalid request from key {key}: bad top_p", "invalid_value")
    async with (
        FakeProviderServer(openai_default(expected_key=key)) as provider,
        app_logs(tmp_path) as path,
        ops_app(stack_urls, unique, provider, WHALLI_OPENAI_API_KEY=key) as chat,
    ):
        alice = await chat.world.register("alice")
        made = await chat.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
        v1_auth = {"Authorization": f"Bearer {made.json()['secret']}"}
        provider.script(Reply(status=400, body=refusal), Reply(status=400, body=refusal))
        ask = {"model": GPT, "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}]}
        v1 = await chat.client.post("/v1/chat/completions", json=ask, headers=v1_auth)
        started = await chat.start(alice["auth"], model=GPT, message=f"q {uuid.uuid4()}")
        events = await chat.events(started["sessionId"])
        read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    assert v1.status_code == 400, v1.text
    assert "bad top_p" in v1.text  # the provider's explanation is passed on...
    assert events[-1][1] == "error", events
    said = {"v1 answer": v1.text, "error event": str(events[-1][2]), "chat": read.text}
    assert key not in logged(path)
    assert [where for where, text in said.items() if key in text] == []  # ...not the key


async def test_a_provider_key_echoed_in_a_401_reaches_neither_the_caller_nor_the_log(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    key = f"vllm-{uuid.uuid4().hex}"
    async with (
        FakeProviderServer(openai_default(expected_key="another key")) as provider,
        app_logs(tmp_path) as path,
        ops_app(stack_urls, unique, provider, WHALLI_OPENAI_API_KEY=key) as chat,
    ):
        alice = await chat.world.register("alice")
        made = await chat.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
        v1_auth = {"Authorization": f"Bearer {made.json()['secret']}"}
        ask = {"model": GPT, "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}]}
        v1 = await chat.client.post("/v1/chat/completions", json=ask, headers=v1_auth)
        streamed = await chat.client.post(
            "/v1/chat/completions", json=ask | {"stream": True}, headers=v1_auth
        )
        started = await chat.start(alice["auth"], model=GPT, message=f"q {uuid.uuid4()}")
        events = await chat.events(started["sessionId"])
    assert v1.status_code >= 500 or v1.status_code == 401, v1.text
    assert "Traceback" not in v1.text
    assert events[-1][1] == "error", events
    for text in (v1.text, streamed.text, str(events)):
        assert key not in text
    assert key not in logged(path)


# --- metrics --------------------------------------------------------------------------------------
async def test_metric_labels_stay_bounded_whatever_paths_methods_and_models_clients_send(
    hunt: Chat,
) -> None:
    chat = hunt
    alice = await chat.world.register("alice")
    made = await chat.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
    v1_auth = {"Authorization": f"Bearer {made.json()['secret']}"}
    marker = uuid.uuid4().hex
    before = await scrape(chat.client)  # the scrape's own series exists from here on
    for i in range(4):
        if i == 1:  # round 0 met every template once; the next rounds must add no series
            before = await scrape(chat.client)
        invented = f"{marker}{i}"
        await chat.client.get(f"/api/{invented}")
        await chat.client.get(f"/{invented}/x")
        await chat.client.get(f"/v1/{invented}")
        await chat.client.request(f"X{invented[:8].upper()}", "/api/health")
        await chat.client.request("PROPFIND", f"/api/chats/{invented}", headers=alice["auth"])
        await chat.client.get(f"/api/chats/{uuid.uuid4()}", headers=alice["auth"])
        await chat.client.get(f"/api/chats/{invented}", headers=alice["auth"])
        await chat.client.get(f"/v1/models/{invented}", headers=v1_auth)
        await chat.client.post(
            "/v1/chat/completions", headers=v1_auth,
            json={"model": f"openai/{invented}", "messages": [{"role": "user", "content": "x"}]},
        )  # fmt: skip
        await chat.client.post(
            "/api/chat/start", headers=alice["auth"], json={"model": invented, "message": "x"}
        )
        await chat.client.get(f"/api/shared/{invented}")
        await chat.client.get(f"/api/files/{invented}", headers=alice["auth"])
    after = await scrape(chat.client)
    assert marker not in after
    for metric, label in (
        ("whalli_http_requests_total", "route"), ("whalli_http_requests_total", "method"),
        ("whalli_http_requests_total", "status"),
        ("whalli_http_request_duration_seconds_count", "route"),
        ("whalli_chat_requests_total", "model"), ("whalli_provider_errors_total", "kind"),
    ):  # fmt: skip
        new = label_values(after, metric, label) - label_values(before, metric, label)
        assert new == set(), (metric, label)
    methods = label_values(after, "whalli_http_requests_total", "method")
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}


async def test_metrics_carry_no_user_ids_emails_or_prompt_text(hunt: Chat) -> None:
    chat = hunt
    alice = await chat.world.register("alice")
    prompt = f"my secret prompt {uuid.uuid4().hex}"
    started = await chat_reply(chat, alice["auth"], model=GPT, message=prompt)
    scraped = await scrape(chat.client)
    for value in (
        alice["email"],
        alice["user"]["id"],
        prompt,
        started["chatId"],
        started["sessionId"],
    ):
        assert value not in scraped
    assert f'whalli_chat_requests_total{{model="{GPT}"' in scraped


async def test_rating_imported_replies_cannot_mint_new_metric_series(hunt: Chat) -> None:
    """An import's assistant messages carry ``chatgpt/<model_slug>`` from the uploaded file;
    rating them must not put that free text in a label."""
    chat = hunt
    alice = await chat.world.register("alice")
    marker = uuid.uuid4().hex
    slugs = [f"{marker}-{i}-{alice['email']}" for i in range(5)]
    export = [
        conversation(
            [
                ("u", None, message("user", "question", at=T)),
                ("a", "u", message("assistant", "answer", at=T + 1, model_slug=slug)),
            ],
            current="a",
            title=f"c{i}",
        )
        for i, slug in enumerate(slugs)
    ]
    imported = await chat.client.post(
        "/api/chats/import", json={"format": "chatgpt", "conversations": export},
        headers=alice["auth"],
    )  # fmt: skip
    assert imported.status_code == 201, imported.text
    before = await scrape(chat.client)
    for made in imported.json()["imported"]:
        read = await chat.client.get(f"/api/chats/{made['chatId']}", headers=alice["auth"])
        reply = read.json()["messages"][-1]
        assert reply["model"].startswith("chatgpt/" + marker)
        rated = await chat.client.put(
            f"/api/chats/{made['chatId']}/messages/{reply['id']}/feedback",
            json={"rating": "up"}, headers=alice["auth"],
        )  # fmt: skip
        assert rated.status_code in (200, 201, 204), rated.text
    after = await scrape(chat.client)
    new = label_values(after, "whalli_chat_ratings_total", "model") - label_values(
        before, "whalli_chat_ratings_total", "model"
    )
    assert len(new) <= 1, new  # at most one fixed value for every imported reply
    assert marker not in after
    assert alice["email"] not in after


async def test_metrics_need_the_scrape_token_when_one_is_set(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    token = f"scrape-{uuid.uuid4().hex}"
    async with (
        app_logs(tmp_path) as path,
        ops_app(stack_urls, unique, WHALLI_METRICS_TOKEN=token) as chat,
    ):
        bare = await chat.client.get("/api/metrics")
        wrong = await chat.client.get("/api/metrics", headers={"Authorization": "Bearer nope"})
        key = await chat.client.get("/api/metrics", headers={"X-API-Key": token})
        right = await chat.client.get("/api/metrics", headers={"Authorization": f"Bearer {token}"})
    for refused in (bare, wrong, key):
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "whalli_http_requests_total" not in refused.text
    assert right.status_code == 200
    assert "whalli_http_requests_total" in right.text
    assert token not in logged(path)


async def test_without_a_token_metrics_are_open_as_the_readme_says(hunt: Chat) -> None:
    """README: ``WHALLI_METRICS_TOKEN`` unset, ``/api/metrics`` answers anyone (production
    requires the token; infra's Traefik refuses the path publicly)."""
    response = await hunt.client.get("/api/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


# --- rate limits ----------------------------------------------------------------------------------
@asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """``live_server`` with uvicorn as ``whalli serve`` runs it: its own proxy-header handling
    off (the test helper keeps uvicorn's default, which believes X-Forwarded-For from
    loopback and would fake a bypass)."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on",
        proxy_headers=False, server_header=False, timeout_graceful_shutdown=5,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "the test server did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@asynccontextmanager
async def limited_app(stack_urls: StackUrls, unique: str, **env: str) -> AsyncIterator[Any]:
    settings = _settings(stack_urls, unique, **env)
    container = build_container(settings)
    async with served(build_app(settings, container)) as client:
        yield client


def _problem_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 429
    assert body["code"]
    assert int(response.headers["retry-after"]) >= 0
    assert "Traceback" not in response.text


async def _exhaust(client: httpx.AsyncClient, limit: int, **headers: str) -> httpx.Response:
    """Anonymous requests until one is refused (the per-IP counter may be shared with other
    tests from the same address, so it may already be spent)."""
    for _ in range(limit + 5):
        response = await client.get("/api/models", headers=headers)
        if response.status_code == 429:
            return response
    raise AssertionError("never limited")


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_buys_no_fresh_budget(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with limited_app(stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="3") as client:
        for _ in range(3):  # a window closing between the two is the only other reason
            refused = await _exhaust(client, 3)
            _problem_429(refused)
            spoofed = [
                await client.get("/api/models", headers={"X-Forwarded-For": f"198.51.100.{i}"})
                for i in range(1, 4)
            ]
            if int(refused.headers["retry-after"]) > 2:
                break
        for response in spoofed:
            _problem_429(response)


async def test_behind_a_trusted_proxy_only_the_address_it_saw_counts(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """The proxy (loopback, trusted) appends the address it saw; whatever the client put to
    the left of it is not believed."""
    seen = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    async with limited_app(
        stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="3", WHALLI_TRUSTED_PROXIES="127.0.0.1"
    ) as client:
        statuses = [
            (await client.get("/api/models", headers={"X-Forwarded-For": seen})).status_code
            for _ in range(3)
        ]
        assert statuses == [401, 401, 401]
        refused = await client.get("/api/models", headers={"X-Forwarded-For": seen})
        _problem_429(refused)
        assert refused.headers["ratelimit-remaining"] == "0"
        for forged in (f"203.0.113.9, {seen}", f"{seen}, {seen}", f"unknown, {seen}"):
            response = await client.get("/api/models", headers={"X-Forwarded-For": forged})
            _problem_429(response)
        split = await client.get(
            "/api/models", headers=[("X-Forwarded-For", "203.0.113.10"), ("X-Forwarded-For", seen)]
        )
        _problem_429(split)


async def test_a_refused_login_is_a_problem_with_retry_after_and_spoofing_does_not_help(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    email = f"victim-{unique}@example.com"
    guesses = [f"guess {i} {uuid.uuid4().hex[:6]}" for i in range(4)]
    async with (
        app_logs(tmp_path) as path,
        limited_app(stack_urls, unique, WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP="2/60") as client,
    ):
        answers = [
            await client.post(
                "/api/auth/login",
                json={"email": email, "password": guess},
                headers={"X-Forwarded-For": f"198.51.100.{i}", "X-Real-IP": f"198.51.100.{i}"},
            )
            for i, guess in enumerate(guesses)
        ]
    assert [a.status_code for a in answers[:2]] == [401, 401]
    for refused in answers[2:]:
        _problem_429(refused)
    text = logged(path)
    assert [g for g in guesses if g in text] == []


# --- SSRF -----------------------------------------------------------------------------------------
async def test_whalli_never_fetches_a_v1_image_url_itself(hunt: Chat) -> None:
    """README: the provider fetches an image URL, Whalli never does. A listener on loopback
    (what an attacker would aim at: metadata services, admin ports) must see no request."""
    chat = hunt
    hits: list[bytes] = []

    async def listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(1024))
        writer.close()

    server = await asyncio.start_server(listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        alice = await chat.world.register("alice")
        made = await chat.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
        v1_auth = {"Authorization": f"Bearer {made.json()['secret']}"}
        urls = [
            f"http://127.0.0.1:{port}/latest/meta-data/{uuid.uuid4().hex}.png",
            f"http://localhost:{port}/x.png?detail=1",
        ]
        for url in urls:
            content = [
                {"type": "text", "text": f"what is this {uuid.uuid4()}"},
                {"type": "image_url", "image_url": {"url": url}},
            ]
            body = {"model": GPT, "messages": [{"role": "user", "content": content}]}
            for stream in (False, True):
                answer = await chat.client.post(
                    "/v1/chat/completions", json=body | {"stream": stream}, headers=v1_auth
                )
                assert answer.status_code == 200, answer.text
            sent = chat.provider.requests[-1].body["messages"][0]["content"][1]
            assert sent["image_url"]["url"] == url
        await asyncio.sleep(0.2)
    finally:
        server.close()
        await server.wait_closed()
    assert hits == []


# --- OAuth ----------------------------------------------------------------------------------------
async def test_oauth_codes_states_and_tokens_stay_out_of_logs_and_redirects_stay_home(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from tests.support.oauth_server import CLIENT_ID, CLIENT_SECRET, FakeOAuthServer

    oauth = FakeOAuthServer().start()
    web_url = "https://app.example.com/signed-in"
    try:
        async with app_logs(tmp_path) as path, ops_app(
            stack_urls, unique, WHALLI_GITHUB_CLIENT_ID=CLIENT_ID,
            WHALLI_GITHUB_CLIENT_SECRET=CLIENT_SECRET,
            WHALLI_GITHUB_AUTHORIZE_URL=f"{oauth.url}/login/oauth/authorize",
            WHALLI_GITHUB_TOKEN_URL=f"{oauth.url}/login/oauth/access_token",
            WHALLI_GITHUB_API_URL=oauth.url, WHALLI_WEB_URL=web_url,
            WHALLI_OAUTH_REDIRECT_BASE_URL="https://api.example.com",
        ) as chat:  # fmt: skip
            client = chat.client
            started = await client.get(
                "/api/auth/oauth/github/authorize",
                headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
            )
            assert started.status_code == 302, started.text
            to_provider = started.headers["location"]
            asked = parse_qs(urlsplit(to_provider).query)
            assert asked["redirect_uri"] == [
                "https://api.example.com/api/auth/oauth/github/callback"
            ]
            set_cookie = started.headers["set-cookie"].lower()
            for flag in ("httponly", "secure", "samesite=lax", "path=/api/auth/oauth"):
                assert flag in set_cookie, set_cookie
            binding = started.cookies.get("whalli_oauth") or re.search(
                r"whalli_oauth=([^;]+)", started.headers["set-cookie"]
            ).group(1)  # type: ignore[union-attr]
            async with httpx.AsyncClient() as browser:
                consent = await browser.get(to_provider)
            back = urlsplit(consent.headers["location"])
            query = parse_qs(back.query)
            code, state = query["code"][0], query["state"][0]
            cookie = {"Cookie": f"whalli_oauth={binding}"}
            done = await client.get(f"{back.path}?{back.query}", headers=cookie)
            replayed = await client.get(f"{back.path}?{back.query}", headers=cookie)
            cancelled = await client.get(
                f"{back.path}?error=access_denied&state={state}", headers=cookie
            )
            oauth.failing = True
            started2 = await client.get("/api/auth/oauth/github/authorize")
            binding2 = re.search(r"whalli_oauth=([^;]+)", started2.headers["set-cookie"])
            assert binding2 is not None
            failed = await client.get(
                browser_consent(started2.headers["location"]),
                headers={"Cookie": f"whalli_oauth={binding2.group(1)}"},
            )
    finally:
        oauth.stop()
    assert done.status_code == 302, done.text
    landing = done.headers["location"]
    assert landing.startswith(web_url + "#")
    assert done.headers["cache-control"] == "no-store"
    assert done.headers["referrer-policy"] == "no-referrer"
    fragment = parse_qs(urlsplit(landing).fragment)
    for refused in (replayed, cancelled):
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    # the provider failing (500) at the token exchange: a problem, no traceback
    assert failed.status_code == 503, failed.text
    assert failed.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in failed.text
    secrets = {
        "code": code, "state": state, "binding": binding, "client secret": CLIENT_SECRET,
        "access token": fragment["accessToken"][0], "refresh token": fragment["refreshToken"][0],
    }  # fmt: skip
    secrets |= {f"provider token {i}": t for i, t in enumerate(oauth._tokens)}
    secrets["made-up code"] = parse_qs(urlsplit(str(failed.request.url)).query)["code"][0]
    assert leaked(logged(path), secrets) == {}


def browser_consent(authorize_url: str) -> str:
    """The callback path and query a failing provider's consent would lead to (a made-up
    code: the callback then fails at the token exchange)."""
    from urllib.parse import parse_qs, urlsplit

    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    return f"/api/auth/oauth/github/callback?code=made-up-{uuid.uuid4().hex}&state={state}"


async def test_readiness_is_503_while_s3_is_unreachable_and_its_keys_stay_secret(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    secret_key = f"s3-secret-{uuid.uuid4().hex}"
    async with app_logs(tmp_path) as path, ops_app(
        stack_urls, unique, WHALLI_S3_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
        WHALLI_S3_ACCESS_KEY=f"access-{unique}", WHALLI_S3_SECRET_KEY=secret_key,
    ) as chat:  # fmt: skip
        live = await chat.client.get("/api/health")
        ready = await chat.client.get("/api/health/ready")
        alice = await chat.world.register("alice")
        upload = await chat.client.post(
            "/api/files/upload", files={"file": ("a.txt", b"hello there", "text/plain")},
            headers=alice["auth"],
        )  # fmt: skip
    assert live.status_code == 200
    assert ready.status_code == 503, ready.text
    assert ready.json()["s3"] != "ok"
    assert {ready.json()["postgres"], ready.json()["redis"]} == {"ok"}
    assert upload.status_code == 503, upload.text
    assert upload.headers["content-type"] == "application/problem+json"
    for text in (ready.text, upload.text, logged(path)):
        assert secret_key not in text
    assert "Traceback" not in upload.text


async def test_with_redis_down_and_limits_failing_closed_requests_get_a_503_problem(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """README: ``WHALLI_RATE_LIMIT_FAIL_OPEN=false``: 503 while Redis is down; probes and the
    scrape are never refused."""
    async with ops_app(
        stack_urls, unique, WHALLI_REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
        WHALLI_RATE_LIMIT_FAIL_OPEN="false",
    ) as chat:  # fmt: skip
        refused = await chat.client.get("/api/models")
        login = await chat.client.post(
            "/api/auth/login", json={"email": "a@example.com", "password": PASSWORD}
        )
        live = await chat.client.get("/api/health")
        metrics = await chat.client.get("/api/metrics")
    for response in (refused, login):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "Traceback" not in response.text
    assert (live.status_code, metrics.status_code) == (200, 200)


async def test_a_user_over_budget_gets_429_with_retry_after_on_api_and_v1(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Per user: a problem on /api, OpenAI's error shape on /v1, both with Retry-After and the
    RateLimit headers; a second API key of the same user shares the budget."""
    async with ops_app(stack_urls, unique, WHALLI_RATE_LIMIT_USER_PER_MIN="4") as chat:
        alice = await chat.world.register("alice")  # anonymous: counted per IP
        auth = alice["auth"]
        first = await chat.client.post("/api/keys", json={"name": "one"}, headers=auth)
        second = await chat.client.post("/api/keys", json={"name": "two"}, headers=auth)
        assert second.status_code == 201, second.text
        ok = [await chat.client.get("/api/models", headers=auth) for _ in range(2)]
        refused = await chat.client.get("/api/models", headers=auth)
        v1 = await chat.client.get(
            "/v1/models", headers={"Authorization": f"Bearer {first.json()['secret']}"}
        )
        other_key = await chat.client.get(
            "/v1/models", headers={"X-API-Key": second.json()["secret"]}
        )
    assert [r.status_code for r in ok] == [200, 200]
    assert ok[-1].headers["ratelimit-remaining"] == "0"
    _problem_429(refused)
    for response in (v1, other_key):
        assert response.status_code == 429, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["type"]
        assert int(response.headers["retry-after"]) >= 0


async def test_ipv6_clients_of_one_64_and_mapped_ipv4_spellings_share_one_budget(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Behind a trusted proxy, a client cannot buy budgets by rotating addresses of its own
    IPv6 /64, nor by the proxy spelling its IPv4 address as IPv4-mapped IPv6."""
    n = uuid.uuid4().int
    prefix = f"2001:db8:{n % 65536:x}:{(n >> 16) % 65536:x}"
    v4 = f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}"
    async with limited_app(
        stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="2", WHALLI_TRUSTED_PROXIES="127.0.0.1"
    ) as client:

        async def status(address: str) -> int:
            response = await client.get("/api/models", headers={"X-Forwarded-For": address})
            return response.status_code

        v6 = [await status(f"{prefix}::{i:x}") for i in range(1, 5)]
        mapped = [await status(f"::ffff:{v4}"), await status(v4), await status(f"[::ffff:{v4}]")]
    assert v6 == [401, 401, 429, 429]
    assert mapped == [401, 401, 429]


@asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A loopback port that accepts connections and never answers (a hung server, a
    firewall dropping replies): the port."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


@pytest.mark.parametrize("service", ["redis", "postgres"])
async def test_readiness_answers_503_when_a_backing_service_hangs(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, service: str
) -> None:
    """A service that accepts connections and never answers must fail readiness (the probe's
    timeout), not hang the probe; liveness stays 200."""
    async with black_hole() as port:
        env = (
            {"WHALLI_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
            if service == "redis"
            else {"WHALLI_DATABASE_URL": f"postgresql://whalli:pw@127.0.0.1:{port}/whalli"}
        )
        async with ops_app(stack_urls, unique, **env) as chat:
            live = await chat.client.get("/api/health")
            ready = await chat.client.get("/api/health/ready")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert ready.status_code == 503, ready.text
    assert ready.json()[service] != "ok"


async def test_a_provider_key_echoed_in_a_mid_stream_error_does_not_reach_the_caller(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    from tests.support.fake_providers import sse

    key = f"vllm-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    said = {"error": {"message": f"Key {key} exceeded its quota", "type": "quota_error"}}
    async with (
        FakeProviderServer(openai_default(expected_key=key)) as provider,
        app_logs(tmp_path) as path,
        ops_app(stack_urls, unique, provider, WHALLI_OPENAI_API_KEY=key) as chat,
    ):
        alice = await chat.world.register("alice")
        provider.script(Reply(chunks=[sse(said)]))
        started = await chat.start(alice["auth"], model=GPT, message=f"q {uuid.uuid4()}")
        events = await chat.events(started["sessionId"])
        read = await chat.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    assert events[-1][1] == "error", events
    assert "quota" in str(events[-1][2])  # the provider's explanation is passed on...
    assert key not in logged(path)
    assert key not in str(events)  # ...not the key
    assert key not in read.text


# --- alerting and dashboards against the metrics the code exports -------------------------------
INFRA = Path(__file__).resolve().parents[3] / "infra"
_METRIC_NAME = re.compile(r"\bwhalli_[a-z_]+\b")


def _queries() -> dict[str, str]:
    """Every PromQL expression of the alert rules and the Grafana dashboard, by where it is."""
    import json

    import yaml

    found: dict[str, str] = {}
    rules = yaml.safe_load((INFRA / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = rule["expr"]

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found[f"{where} {node.get('refId', '')}"] = node["expr"]
            title = node.get("title") if isinstance(node.get("title"), str) else where
            for value in node.values():
                walk(value, f"panel {title}" if title != where else where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    for dashboard in (INFRA / "grafana" / "dashboards").glob("*.json"):
        walk(json.loads(dashboard.read_text()), dashboard.name)
    return found


def _exported_series() -> set[str]:
    """The sample names of every metric the API and the worker register."""
    from prometheus_client import CollectorRegistry

    from whalli.adapters.dramatiq.metrics import worker_collectors
    from whalli.adapters.prometheus import chat_metrics, metrics, transcription_metrics

    metrics.http_metrics()
    metrics.rate_limiter_errors()
    metrics.chat_start_waits()
    chat_metrics.sse_connections()
    transcription_metrics.register()
    worker = CollectorRegistry()
    worker_collectors(worker)
    from prometheus_client import REGISTRY

    suffixes = {
        "counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
    }  # fmt: skip
    names: set[str] = set()
    for registry in (REGISTRY, worker):
        for family in registry.collect():
            if family.name.startswith("whalli_"):
                names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def test_every_metric_the_alerts_and_dashboard_query_is_one_the_code_exports() -> None:
    exported = _exported_series()
    assert "whalli_http_requests_total" in exported
    unknown = {
        where: sorted(set(_METRIC_NAME.findall(expr)) - exported)
        for where, expr in _queries().items()
        if set(_METRIC_NAME.findall(expr)) - exported
    }
    assert unknown == {}


def durations_counted(metrics: str, family: str, method: str, route: str) -> float:
    """How many requests ``family`` (a duration histogram) counted for ``method`` ``route``."""
    labels = f'method="{method}",route="{route}"'
    found = re.search(rf"^{family}_count\{{{re.escape(labels)}\}} (\S+)$", metrics, re.M)
    return 0.0 if found is None else float(found.group(1))


async def test_the_latency_alert_leaves_out_every_sse_route_as_its_comment_says(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """alerts.yml: latency "leaves out event streams (SSE ...) and /v1/chat/completions". A
    file's event feed is SSE only and lives up to 600 s by default; a start may answer with the
    reply as events; a plain /v1 answer waits for the whole reply. (The metrics are the
    process's, shared with earlier tests: what this one adds is compared.)"""
    feed_route, start_route = "/api/files/{file_id:uuid}/events", "/api/chat/start"
    requests, streams = (
        "whalli_http_request_duration_seconds",
        "whalli_http_stream_duration_seconds",
    )
    async with ops_app(
        stack_urls, unique, WHALLI_FILE_EVENTS_MAX_LIFETIME_S="0.5",
        WHALLI_FILE_EVENTS_POLL_S="0.1",
    ) as chat:  # fmt: skip
        alice = await chat.world.register("alice")
        uploaded = await chat.client.post(
            "/api/files/upload", files={"file": ("a.txt", b"hello there", "text/plain")},
            headers=alice["auth"],
        )  # fmt: skip
        assert uploaded.status_code in (200, 201, 202), uploaded.text
        before = await scrape(chat.client)
        url = f"/api/files/{uploaded.json()['id']}/events"
        async with chat.client.stream("GET", url, headers=alice["auth"]) as feed:
            assert feed.headers["content-type"].startswith("text/event-stream")
            body = (await feed.aread()).decode()
        assert "event: " in body
        async with chat.client.stream(
            "POST", start_route, json={"model": "dev/echo", "message": "hi there"},
            headers={**alice["auth"], "Accept": "text/event-stream"},
        ) as reply:  # fmt: skip
            assert reply.headers["content-type"].startswith("text/event-stream")
            assert "event: done" in (await reply.aread()).decode()
        plain = await chat.client.post(
            start_route, json={"model": "dev/echo", "message": "hi again"},
            headers=alice["auth"],
        )  # fmt: skip
        assert plain.status_code == 201, plain.text
        after = await scrape(chat.client)

    def added(family: str, method: str, route: str) -> float:
        return durations_counted(after, family, method, route) - durations_counted(
            before, family, method, route
        )

    # each stream in the stream histogram only; the plain start in the request one only
    assert (added(streams, "GET", feed_route), added(requests, "GET", feed_route)) == (1, 0)
    assert (added(streams, "POST", start_route), added(requests, "POST", start_route)) == (1, 1)
    latency = _queries()["alert WhalliHighLatencyP95"]
    assert "whalli_http_request_duration_seconds_bucket" in latency
    assert "whalli_http_stream_duration_seconds" not in latency
    excluded = re.search(r'route!~"([^"]+)"', latency)
    assert excluded is not None, latency
    assert re.fullmatch(excluded.group(1), "/v1/chat/completions")
    assert not re.fullmatch(excluded.group(1), start_route)


def gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.M)
    return 0.0 if found is None else float(found.group(1))  # not registered yet: none open


async def test_open_stream_gauges_come_back_down_when_clients_leave_mid_stream(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """``whalli_sse_connections_active`` and ``whalli_http_requests_in_flight`` count open
    streams; a client leaving half-way (chat stream, /v1 stream, file feed) must not leave
    them counted forever."""
    gates = [asyncio.Event(), asyncio.Event()]
    from tests.support.fake_providers import openai_stream

    async with (
        FakeProviderServer(openai_default()) as provider,
        ops_app(stack_urls, unique, provider) as chat,
    ):
        alice = await chat.world.register("alice")
        made = await chat.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
        v1_auth = {"Authorization": f"Bearer {made.json()['secret']}"}
        uploaded = await chat.client.post(
            "/api/files/upload", files={"file": ("a.txt", b"hello there", "text/plain")},
            headers=alice["auth"],
        )  # fmt: skip
        before = await scrape(chat.client)
        provider.script(*(Reply(chunks=openai_stream(), gate=g, gate_after=2) for g in gates))
        started = await chat.start(alice["auth"], model=GPT, message=f"q {uuid.uuid4()}")
        async with (
            httpx.AsyncClient(base_url=chat.client.base_url, timeout=30) as leaving,
            contextlib.AsyncExitStack() as open_streams,
        ):
            readers: list[Any] = []  # kept: a reader collected early would close its stream

            async def open_until(method: str, url: str, first: str, **kw: Any) -> None:
                response = await open_streams.enter_async_context(leaving.stream(method, url, **kw))
                assert response.status_code == 200
                readers.append(lines := response.aiter_lines())
                while not (await anext(lines)).startswith(first):
                    pass

            await open_until(
                "GET", f"/api/chat/stream?sessionId={started['sessionId']}", "event: token"
            )
            ask = {
                "model": GPT, "stream": True,
                "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}],
            }  # fmt: skip
            await open_until("POST", "/v1/chat/completions", "data:", json=ask, headers=v1_auth)
            feed_url = f"/api/files/{uploaded.json()['id']}/events"
            await open_until("GET", feed_url, "event: status", headers=alice["auth"])
            during = await scrape(chat.client)  # all three open
        for gate in gates:
            gate.set()
        after = before
        for _ in range(100):  # the server notices each departure on its next write or beat
            await asyncio.sleep(0.1)
            after = await scrape(chat.client)
            if gauge(after, "whalli_sse_connections_active") <= gauge(
                before, "whalli_sse_connections_active"
            ):
                break
    name = "whalli_sse_connections_active"
    assert gauge(during, name) == gauge(before, name) + 3
    assert gauge(after, name) == gauge(before, name)
    in_flight = "whalli_http_requests_in_flight"
    # the scrape itself is the one request in flight
    assert gauge(after, in_flight) == gauge(before, in_flight)


def test_production_refuses_to_start_without_a_metrics_token_or_jwt_secret() -> None:
    """README: ``WHALLI_METRICS_TOKEN`` and ``WHALLI_JWT_SECRET`` are required in production;
    the refusal names the variable and never echoes a secret given beside it."""
    from whalli.config import ConfigError, load_settings

    secret = f"pw-{uuid.uuid4().hex}"
    env = {
        "WHALLI_ENV": "production", "WHALLI_JWT_SECRET": "j" * 40,
        "WHALLI_METRICS_TOKEN": f"tok-{uuid.uuid4().hex}",
        "WHALLI_DATABASE_URL": f"postgresql://whalli:{secret}@db.example:5432/whalli",
        "WHALLI_REDIS_URL": f"redis://:{secret}@redis.example:6379/0",
        "WHALLI_S3_ENDPOINT": "http://minio.example:9000", "WHALLI_S3_ACCESS_KEY": "a",
        "WHALLI_S3_SECRET_KEY": secret,
    }  # fmt: skip
    load_settings(env, dotenv=None)
    for missing in ("WHALLI_METRICS_TOKEN", "WHALLI_JWT_SECRET"):
        with pytest.raises(ConfigError, match=missing) as refused:
            load_settings({k: v for k, v in env.items() if k != missing}, dotenv=None)
        assert secret not in str(refused.value)


def _fullwidth(text: str, index: int) -> str:
    """``text`` with its ``index``-th ASCII letter in its fullwidth form (NFKC folds it back)."""
    return text[:index] + chr(ord(text[index]) + 0xFEE0) + text[index + 1 :]


async def test_spelling_the_email_differently_buys_no_fresh_login_attempts(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    email = f"victim{unique}@example.com"
    async with limited_app(
        stack_urls, unique, WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP="2/60"
    ) as client:
        made = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert made.status_code == 201, made.text

        async def attempt(spelling: str, password: str) -> int:
            answer = await client.post(
                "/api/auth/login", json={"email": spelling, "password": password}
            )
            return answer.status_code

        plain = [await attempt(email, f"guess {i}") for i in range(3)]
        # the same account (NFKC): the right password signs in through a fullwidth spelling
        same_account = await attempt(_fullwidth(email, 0), PASSWORD)
        variants = [await attempt(_fullwidth(email, i), f"guess {i}") for i in range(1, 4)]
    assert plain == [401, 401, 429]
    assert variants == [429, 429, 429]
    assert same_account == 429  # (it signs in: 200, proving the spelling is the same account)
