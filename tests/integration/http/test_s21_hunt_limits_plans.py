"""Hunt S21 of rate limits, plans and usage, through the real app on real Postgres and Redis.

Rate limits: one budget per user whatever the credential (JWT, API key) and the route (``/api``,
``/v1``); 429s in each route family's shape with ``Retry-After``; the client IP taken from
``X-Forwarded-For`` only behind a trusted proxy; an IPv6 client counted by its /64; probes
never limited; a refused credential charging no innocent account. Plans: a model above the
caller's plan (after a downgrade too) is refused on every path (start, regenerate, ``/v1``,
cached answers, listings, titles). Usage: UTC day edges, float cost sums, calendar edges.

Requests whose client IP matters go through ``httpx.ASGITransport`` with a chosen peer address,
a fresh random one per test: the shared Redis keeps every other run's counts for 127.0.0.1.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import PASSWORD, _settings
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import Container, build_container
from whalli.domain.model.jobs import TitleChat
from whalli.entrypoints.http.asgi import build_app
from whalli.ports.usage import UsageRecord

PROBLEM = "application/problem+json"
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
PRO = "openai/gpt-4o"  # min_plan pro in the shipped catalog
FREE = "openai/gpt-4o-mini"  # min_plan free


def _v4() -> str:
    """A random address of 100.64.0.0/10, unique enough for one test's counts."""
    return f"100.{random.randint(64, 127)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def _v6_prefix() -> str:
    """A random /64 of 2001:db8::/32 (its first four groups)."""
    return f"2001:db8:{random.randint(0, 0xFFFF):x}:{random.randint(0, 0xFFFF):x}"


def _budget(response: httpx.Response) -> tuple[str | None, ...]:
    return tuple(response.headers.get(name) for name in RATE_HEADERS)


class Limited:
    """The real app with small limits, reached from chosen peer addresses."""

    def __init__(self, app: Litestar, container: Container) -> None:
        self.app, self.container = app, container

    def peer(self, ip: str | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(ip or _v4(), 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver.local")

    async def register(self, name: str) -> dict[str, Any]:
        email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
        async with self.peer() as client:
            response = await client.post(
                "/api/auth/register", json={"email": email, "password": PASSWORD, "name": name}
            )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        body["email"] = email
        body["auth"] = {"Authorization": f"Bearer {body['tokens']['accessToken']}"}
        return body

    async def key(self, auth: dict[str, str]) -> dict[str, Any]:
        async with self.peer() as client:
            created = await client.post("/api/keys", json={"name": "script"}, headers=auth)
        assert created.status_code == 201, created.text
        body: dict[str, Any] = created.json()
        return body


@asynccontextmanager
async def limited(stack_urls: StackUrls, unique: str, **env: str) -> AsyncIterator[Limited]:
    settings = _settings(stack_urls, unique, **env)
    container = build_container(settings)
    app = build_app(settings, container)
    async with AsyncTestClient(app=app):  # runs the app's lifespan
        yield Limited(app, container)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"]
    return body


# --- rate limits ----------------------------------------------------------------------------------
async def test_s21f_a_users_jwt_and_api_key_share_one_budget_on_api_and_v1(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with limited(
        stack_urls, unique,
        WHALLI_RATE_LIMIT_USER_PER_MIN="4", WHALLI_RATE_LIMIT_IP_PER_MIN="1000",
    ) as app:  # fmt: skip
        alice = await app.register("alice")
        key = await app.key(alice["auth"])  # 1 of alice's 4
        async with app.peer() as one, app.peer() as two:
            answers = [
                await one.get("/api/auth/me", headers=alice["auth"]),
                await two.get("/v1/models", headers=_bearer(key["secret"])),
                await one.get("/api/models", headers={"X-API-Key": key["secret"]}),
                await two.get("/api/models", headers=alice["auth"]),
                await one.get("/v1/models", headers=_bearer(key["secret"])),
            ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert [_budget(a)[:2] for a in answers[:3]] == [("4", "2"), ("4", "1"), ("4", "0")]


async def test_s21f_a_429_has_retry_after_and_the_shape_of_its_route_family(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with limited(
        stack_urls, unique,
        WHALLI_RATE_LIMIT_USER_PER_MIN="2", WHALLI_RATE_LIMIT_IP_PER_MIN="1000",
    ) as app:  # fmt: skip
        alice = await app.register("alice")
        key = await app.key(alice["auth"])
        async with app.peer() as client:
            ok = await client.get("/api/auth/me", headers=alice["auth"])
            api = await client.get("/api/auth/me", headers=alice["auth"])
            v1 = await client.post(
                "/v1/chat/completions", headers=_bearer(key["secret"]),
                json={"model": "dev/echo", "messages": [{"role": "user", "content": "hi"}]},
            )  # fmt: skip
    assert ok.status_code == 200
    body = _problem(api, 429)
    assert body["code"] == "rate_limited"
    limit, remaining, reset = _budget(api)
    assert (limit, remaining) == ("2", "0")
    assert api.headers["retry-after"] == reset
    assert 1 <= int(reset or 0) <= 60
    assert v1.status_code == 429, v1.text
    assert v1.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(v1.headers["retry-after"]) <= 60
    assert _budget(v1)[:2] == ("2", "0")


async def test_s21f_forwarded_for_from_an_untrusted_peer_buys_no_budget(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        limited(
            stack_urls,
            unique,
            WHALLI_RATE_LIMIT_IP_PER_MIN="2",
            WHALLI_TRUSTED_PROXIES="10.0.0.0/8",
        ) as app,
        app.peer() as client,
    ):
        statuses = [
            (await client.get("/api/models", headers={"X-Forwarded-For": _v4()})).status_code
            for _ in range(3)
        ]
    assert statuses == [401, 401, 429]


async def test_s21f_behind_a_trusted_proxy_the_clients_own_forwarded_entries_are_ignored(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with limited(
        stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="2", WHALLI_TRUSTED_PROXIES="10.0.0.0/8"
    ) as app:
        client_ip, other = _v4(), _v4()
        statuses = []
        for n in range(3):
            spoofed = f"{_v4()}, {_v4()}, {client_ip}"  # the client's entries, then the proxy's
            async with app.peer(f"10.{n}.0.1") as proxy:
                answered = await proxy.get("/api/models", headers={"X-Forwarded-For": spoofed})
            statuses.append(answered.status_code)
        async with app.peer("10.9.9.9") as proxy:
            elsewhere = await proxy.get("/api/models", headers={"X-Forwarded-For": other})
    assert statuses == [401, 401, 429]
    assert elsewhere.status_code == 401


async def test_s21f_an_ipv6_client_counts_by_its_64_not_by_each_address(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with limited(stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="2") as app:
        prefix = _v6_prefix()
        statuses = []
        for address in (f"{prefix}::1", f"{prefix}::2", f"{prefix}:ffff:ffff:ffff:fffe"):
            async with app.peer(address) as client:
                statuses.append((await client.get("/api/models")).status_code)
        async with app.peer(f"{_v6_prefix()}::1") as neighbour:
            other = await neighbour.get("/api/models")
        mapped = _v4()
        mapped_statuses = []
        for address in (mapped, f"::ffff:{mapped}", mapped):
            async with app.peer(address) as client:
                mapped_statuses.append((await client.get("/api/models")).status_code)
    assert statuses == [401, 401, 429]
    assert other.status_code == 401
    assert mapped_statuses == [401, 401, 429]


async def test_s21f_forwarded_ipv6_clients_behind_a_trusted_proxy_count_by_their_64(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with limited(
        stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="2", WHALLI_TRUSTED_PROXIES="10.0.0.0/8"
    ) as app:
        prefix = _v6_prefix()
        statuses = []
        for header in (f"{prefix}::1", f"[{prefix}::2]:443", f"{prefix}:0:0:0:3"):
            async with app.peer("10.1.2.3") as proxy:
                answered = await proxy.get("/api/models", headers={"X-Forwarded-For": header})
            statuses.append(answered.status_code)
    assert statuses == [401, 401, 429]


async def test_s21f_probes_and_the_metrics_scrape_are_never_limited(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        limited(stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="1") as app,
        app.peer() as client,
    ):
        spent = await client.get("/api/models")
        refused = await client.get("/api/models")
        probes = [
            (await client.get(url)).status_code
            for url in ("/api/health", "/api/health/ready", "/api/health", "/api/metrics")
        ]
    assert (spent.status_code, refused.status_code) == (401, 429)
    assert 429 not in probes, probes
    assert probes[0] == probes[2] == 200


async def test_s21f_a_refused_token_is_counted_against_its_ip(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        limited(stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="2") as app,
        app.peer() as client,
    ):
        statuses = [
            (await client.get("/api/models", headers=header)).status_code
            for header in (
                _bearer("not-a-token"),
                {"X-API-Key": "whk_" + "x" * 40},
                _bearer("whk_" + "y" * 40),
            )
        ]
    assert statuses == [401, 401, 429]


async def test_s21f_a_wrong_metrics_token_is_charged_to_its_ip_and_the_scraper_never_refused(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    token = f"scrape-{uuid.uuid4().hex}"
    async with limited(
        stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="2", WHALLI_METRICS_TOKEN=token
    ) as app:
        ip = _v4()
        async with app.peer(ip) as client:
            wrong = [
                (await client.get("/api/metrics", headers=_bearer("guess"))).status_code
                for _ in range(3)
            ]
            scraped = [
                (await client.get("/api/metrics", headers=_bearer(token))).status_code
                for _ in range(3)
            ]
    assert wrong == [401, 401, 429]
    assert scraped == [200, 200, 200]


async def test_s21f_with_limits_disabled_nothing_is_refused_nor_reported(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        limited(
            stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="1",
            WHALLI_RATE_LIMIT_ENABLED="false",
        ) as app,
        app.peer() as client,
    ):  # fmt: skip
        answers = [await client.get("/api/models") for _ in range(3)]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert all(_budget(a) == (None, None, None) for a in answers)


async def test_s21f_login_guessing_is_limited_per_account_and_ip_not_for_the_owner_elsewhere(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with limited(
        stack_urls, unique,
        WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP="3/60", WHALLI_RATE_LIMIT_IP_PER_MIN="1000",
    ) as app:  # fmt: skip
        alice = await app.register("alice")
        attacker = _v4()
        async with app.peer(attacker) as client:
            guesses = [
                (
                    await client.post(
                        "/api/auth/login", json={"email": alice["email"], "password": f"no{n}x!"}
                    )
                ).status_code
                for n in range(3)
            ]
            right = await client.post(
                "/api/auth/login", json={"email": alice["email"].upper(), "password": PASSWORD}
            )
        async with app.peer() as owner:
            elsewhere = await owner.post(
                "/api/auth/login", json={"email": alice["email"], "password": PASSWORD}
            )
    assert guesses == [401, 401, 401]
    _problem(right, 429)
    assert 1 <= int(right.headers["retry-after"]) <= 60
    assert elsewhere.status_code == 200, elsewhere.text


async def test_s21f_a_revoked_key_replayed_by_someone_else_does_not_spend_its_owners_budget(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with limited(
        stack_urls, unique,
        WHALLI_RATE_LIMIT_USER_PER_MIN="5", WHALLI_RATE_LIMIT_IP_PER_MIN="1000",
    ) as app:  # fmt: skip
        alice = await app.register("alice")
        key = await app.key(alice["auth"])  # 1
        async with app.peer() as own:
            used = await own.get("/v1/models", headers=_bearer(key["secret"]))  # 2
            revoked = await own.delete(f"/api/keys/{key['id']}", headers=alice["auth"])  # 3
        assert used.status_code == 200, used.text
        assert revoked.status_code in (200, 204), revoked.text
        async with app.peer() as thief:  # the leaked key, revoked, replayed elsewhere
            replays = [
                (await thief.get("/v1/models", headers=_bearer(key["secret"]))).status_code
                for _ in range(5)
            ]
        async with app.peer() as own:
            after = await own.get("/api/auth/me", headers=alice["auth"])  # 4 of alice's 5
    assert replays == [401] * 5
    assert after.status_code == 200, after.text


async def test_s21f_an_ended_sessions_token_replayed_does_not_spend_its_users_budget(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with limited(
        stack_urls, unique,
        WHALLI_RATE_LIMIT_USER_PER_MIN="3", WHALLI_RATE_LIMIT_IP_PER_MIN="1000",
    ) as app:  # fmt: skip
        alice = await app.register("alice")
        async with app.peer() as own:
            ended = await own.post(
                "/api/auth/logout", json={"refreshToken": alice["tokens"]["refreshToken"]}
            )
            assert ended.status_code == 204, ended.text
            login = await own.post(
                "/api/auth/login", json={"email": alice["email"], "password": PASSWORD}
            )
        fresh = _bearer(login.json()["accessToken"])
        async with app.peer() as thief:
            replays = [
                (await thief.get("/api/auth/me", headers=alice["auth"])).status_code
                for _ in range(4)
            ]
        async with app.peer() as own:
            after = await own.get("/api/auth/me", headers=fresh)
    assert replays == [401] * 4
    assert after.status_code == 200, after.text


async def test_s21f_the_reply_stream_is_not_charged_but_starting_replies_is(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with chat_app(stack_urls, unique, WHALLI_RATE_LIMIT_USER_PER_MIN="4") as chat:
        alice = await chat.world.register("alice")  # by IP: not alice's budget
        auth = alice["auth"]
        first = await chat.start(auth, model="dev/echo", message=f"hi {uuid.uuid4()}")  # 1
        for _ in range(3):  # reading (and re-reading) a reply costs nothing
            events = await chat.events(first["sessionId"])
            assert events[-1][1] == "done", events[-1]
        second = await chat.client.post(
            "/api/chat/start", json={"model": "dev/echo", "message": "again"}, headers=auth
        )  # 2
        third = await chat.client.post(
            "/api/chat/start", json={"model": "dev/echo", "message": "more"},
            headers={**auth, "Accept": "text/event-stream"},
        )  # fmt: skip  # 3
        fourth = await chat.client.get("/api/auth/me", headers=auth)  # 4
        fifth = await chat.client.post(
            "/api/chat/regenerate", json={"chatId": first["chatId"]}, headers=auth
        )
    assert second.status_code == 201, second.text
    assert _budget(second)[:2] == ("4", "2")
    assert third.status_code == 201, third.text
    assert _budget(fourth)[:2] == ("4", "0")
    _problem(fifth, 429)


# --- plans ----------------------------------------------------------------------------------------
async def _set_plan(chat: Chat, admin: dict[str, str], user: dict[str, Any], plan: str) -> None:
    changed = await chat.client.patch(
        f"/api/admin/users/{user['user']['id']}", json={"plan": plan}, headers=admin
    )
    assert changed.status_code == 200, changed.text


async def _done(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    started = await chat.start(auth, **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    return started


async def test_s21f_after_a_downgrade_a_pro_chat_can_neither_be_regenerated_nor_continued(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    auth = alice["auth"]
    await _set_plan(chat, admin, alice, "pro")
    started = await _done(chat, auth, model=PRO, message=f"pro {uuid.uuid4()}")
    await _set_plan(chat, admin, alice, "free")
    calls = len(chat.provider.requests)

    again = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=auth
    )
    assert _problem(again, 403)["code"] == "model_not_in_plan"
    edited = await chat.client.post(
        "/api/chat/regenerate",
        json={"chatId": started["chatId"], "message": "edited"}, headers=auth,
    )  # fmt: skip
    assert _problem(edited, 403)["code"] == "model_not_in_plan"
    more = await chat.client.post(
        "/api/chat/start",
        json={"chatId": started["chatId"], "model": PRO, "message": "go on"},
        headers={**auth, "Accept": "text/event-stream"},
    )  # fmt: skip
    assert _problem(more, 403)["code"] == "model_not_in_plan"
    assert len(chat.provider.requests) == calls
    read = (await chat.client.get(f"/api/chats/{started['chatId']}", headers=auth)).json()
    assert [m["role"] for m in read["messages"]] == ["user", "assistant"]
    assert read["messages"][0]["content"].startswith("pro ")

    cheaper = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": started["chatId"], "model": FREE}, headers=auth
    )
    assert cheaper.status_code == 201, cheaper.text


async def test_s21f_v1_after_a_downgrade_refuses_and_hides_the_model_even_a_cached_answer(
    chat: Chat,
) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    await _set_plan(chat, admin, alice, "pro")
    created = await chat.client.post("/api/keys", json={"name": "k"}, headers=alice["auth"])
    key = _bearer(created.json()["secret"])
    body = {
        "model": PRO, "temperature": 0,
        "messages": [{"role": "user", "content": f"cache me {uuid.uuid4()}"}],
    }  # fmt: skip
    first = await chat.client.post("/v1/chat/completions", json=body, headers=key)
    assert first.status_code == 200, first.text
    listed = (await chat.client.get("/v1/models", headers=key)).json()["data"]
    assert PRO in [m["id"] for m in listed]
    await _set_plan(chat, admin, alice, "free")
    calls = len(chat.provider.requests)

    cached = await chat.client.post("/v1/chat/completions", json=body, headers=key)
    streamed = await chat.client.post(
        "/v1/chat/completions", json={**body, "stream": True}, headers=key
    )
    for refused in (cached, streamed):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "permission_error"
    assert len(chat.provider.requests) == calls
    listed = (await chat.client.get("/v1/models", headers=key)).json()["data"]
    assert PRO not in [m["id"] for m in listed]
    one = await chat.client.get(f"/v1/models/{PRO}", headers=key)
    assert one.status_code == 404, one.text
    mine = (await chat.client.get("/api/models", headers=alice["auth"])).json()
    assert PRO not in [m["id"] for m in mine]
    assert all(m["minPlan"] == "free" for m in mine)


async def test_s21f_a_free_member_is_not_served_a_pro_members_cached_reply(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    owner = await chat.world.register("owner")
    member = await chat.world.register("member")
    await _set_plan(chat, admin, owner, "pro")
    project_id = await team_project(chat, owner, member, "editor")
    prompt = f"shared question {uuid.uuid4()}"
    await _done(chat, owner["auth"], model=PRO, message=prompt, projectId=project_id)
    calls = len(chat.provider.requests)

    refused = await chat.client.post(
        "/api/chat/start", json={"model": PRO, "message": prompt, "projectId": project_id},
        headers=member["auth"],
    )  # fmt: skip
    assert _problem(refused, 403)["code"] == "model_not_in_plan"
    assert len(chat.provider.requests) == calls
    usage = (await chat.client.get("/api/usage", headers=member["auth"])).json()
    assert usage["total"]["requests"] == 0


async def test_s21f_each_plan_lists_its_models_and_those_below_only(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    seen: dict[str, set[str]] = {}
    for plan in ("free", "pro", "enterprise"):
        await _set_plan(chat, admin, alice, plan)
        listed = (await chat.client.get("/api/models", headers=alice["auth"])).json()
        seen[plan] = {m["minPlan"] for m in listed}
    assert seen["free"] == {"free"}
    assert seen["pro"] == {"free", "pro"}
    assert seen["enterprise"] <= {"free", "pro", "enterprise"}
    assert seen["pro"] <= seen["enterprise"]


@asynccontextmanager
async def _titled(stack_urls: StackUrls, unique: str) -> AsyncIterator[Chat]:
    queue = f"hunt-s21f-{unique}"
    try:
        async with chat_app(
            stack_urls, unique, WHALLI_CHAT_TITLES="model", WHALLI_QUEUE_NAME=queue
        ) as chat:
            yield chat
    finally:
        async with Redis.from_url(stack_urls.redis_url) as client:
            async for key in client.scan_iter(match=f"{queue}:*"):
                await client.delete(key)


async def test_s21f_a_chat_titled_after_a_downgrade_is_not_titled_by_the_pro_model(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _titled(stack_urls, unique) as chat:
        admin = await chat.world.create_admin()
        alice = await chat.world.register("alice")
        await _set_plan(chat, admin, alice, "pro")
        started = await _done(chat, alice["auth"], model=PRO, message=f"title me {uuid.uuid4()}")
        await _set_plan(chat, admin, alice, "free")
        calls = len(chat.provider.requests)
        before = (await chat.client.get("/api/usage", headers=alice["auth"])).json()
        handler = await resolved(chat.world.container.services.title_chat())
        await handler.execute(TitleChat(chat_id=uuid.UUID(started["chatId"]), expected_title=None))
        after = (await chat.client.get("/api/usage", headers=alice["auth"])).json()
    asked = [r.body.get("model") for r in chat.provider.requests[calls:]]
    assert "gpt-4o" not in asked, asked
    pro_before = {m["model"]: m["requests"] for m in before["byModel"]}.get(PRO)
    pro_after = {m["model"]: m["requests"] for m in after["byModel"]}.get(PRO)
    assert pro_after == pro_before


# --- usage ----------------------------------------------------------------------------------------
async def _record(
    container: Container, user_id: str, at: datetime, cost: float, model: str = FREE
) -> None:
    uow = await resolved(container.adapters.unit_of_work())
    record = UsageRecord(
        id=uuid.uuid4(), user_id=uuid.UUID(user_id), message_id=None, model=model,
        provider=model.split("/")[0], prompt_tokens=10, completion_tokens=5, cost_usd=cost,
        cached=False, created_at=at,
    )  # fmt: skip
    async with uow.autocommit() as w:
        await w.usage.add(record)


async def test_s21f_usage_days_are_utc_days_to_the_microsecond(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    uid, container = alice["user"]["id"], chat.world.container
    lisbon_summer = timezone(timedelta(hours=1))
    tokyo = timezone(timedelta(hours=9))
    await _record(container, uid, datetime(2026, 3, 10, 0, 0, tzinfo=UTC), 0.1)
    await _record(container, uid, datetime(2026, 3, 10, 23, 59, 59, 999999, tzinfo=UTC), 0.2)
    # 2026-03-11 00:30 at UTC+1 is still the 10th in UTC
    await _record(container, uid, datetime(2026, 3, 11, 0, 30, tzinfo=lisbon_summer), 0.4)
    await _record(container, uid, datetime(2026, 3, 11, 0, 0, tzinfo=UTC), 1.0)
    # 2026-03-10 08:59 in Tokyo is the 9th in UTC
    await _record(container, uid, datetime(2026, 3, 10, 8, 59, tzinfo=tokyo), 2.0)

    one = await chat.client.get("/api/usage?from=2026-03-10&to=2026-03-10", headers=alice["auth"])
    assert one.status_code == 200, one.text
    assert one.json()["total"]["requests"] == 3
    assert one.json()["total"]["costUsd"] == 0.7
    three = await chat.client.get("/api/usage?from=2026-03-09&to=2026-03-11", headers=alice["auth"])
    days = {d["day"]: (d["requests"], d["costUsd"]) for d in three.json()["byDay"]}
    assert days == {"2026-03-09": (1, 2.0), "2026-03-10": (3, 0.7), "2026-03-11": (1, 1.0)}
    assert three.json()["total"]["costUsd"] == 3.7


async def test_s21f_usage_costs_sum_without_float_noise_in_every_figure(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    uid, container = alice["user"]["id"], chat.world.container
    day = datetime(2026, 4, 2, 12, tzinfo=UTC)
    for cost in (0.1, 0.2):
        await _record(container, uid, day, cost)
    for _ in range(3):
        await _record(container, uid, day, 0.1, model="dev/echo")
    answered = await chat.client.get(
        "/api/usage?from=2026-04-02&to=2026-04-02", headers=alice["auth"]
    )
    usage = answered.json()
    assert usage["total"]["costUsd"] == 0.6
    assert {m["model"]: m["costUsd"] for m in usage["byModel"]} == {FREE: 0.3, "dev/echo": 0.3}
    assert [d["costUsd"] for d in usage["byDay"]] == [0.6]


@pytest.mark.parametrize(
    ("query", "days"),
    [
        ("from=0001-01-01&to=0001-12-31", 365),
        ("from=9999-12-01&to=9999-12-31", 31),
        ("to=0001-01-10", 10),
    ],
)
async def test_s21f_usage_at_the_calendars_edges_is_an_empty_summary_not_an_error(
    chat: Chat, query: str, days: int
) -> None:
    alice = await chat.world.register("alice")
    answered = await chat.client.get(f"/api/usage?{query}", headers=alice["auth"])
    assert answered.status_code == 200, answered.text
    assert len(answered.json()["byDay"]) == days
    assert answered.json()["total"]["requests"] == 0


async def test_s21f_usage_is_each_users_own_and_admin_views_need_a_session(chat: Chat) -> None:
    admin = await chat.world.create_admin()
    alice = await chat.world.register("alice")
    bob = await chat.world.register("bob")
    await _record(chat.world.container, alice["user"]["id"], datetime.now(UTC), 0.5)
    bobs = (await chat.client.get("/api/usage", headers=bob["auth"])).json()
    assert bobs["total"]["requests"] == 0
    sneaky = await chat.client.get(
        f"/api/usage?userId={alice['user']['id']}&user_id={alice['user']['id']}",
        headers=bob["auth"],
    )
    assert sneaky.status_code in (200, 400), sneaky.text
    if sneaky.status_code == 200:
        assert sneaky.json()["total"]["requests"] == 0
    created = await chat.client.post("/api/keys", json={"name": "k"}, headers=admin)
    by_key = await chat.client.get(
        f"/api/admin/users/{alice['user']['id']}/usage",
        headers=_bearer(created.json()["secret"]),
    )
    _problem(by_key, 403)
    seen = await chat.client.get(f"/api/admin/users/{alice['user']['id']}/usage", headers=admin)
    assert seen.json()["total"]["requests"] == 1
