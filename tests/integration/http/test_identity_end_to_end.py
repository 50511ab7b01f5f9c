"""Identity and access through the real app, container, Postgres and Redis."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from dependency_injector import providers
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.pwned_passwords import FakePwnedPasswords
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.clock import ManualClock
from whalli.config import load_settings
from whalli.container import Container, build_container
from whalli.domain.model.users import Plan
from whalli.domain.services.auth.create_user import CreateUser, CreateUserHandler
from whalli.entrypoints.http.asgi import build_app

JWT_SECRET = "e2e-" + "x" * 60
PASSWORD = "correct horse battery staple"


def _settings(urls: StackUrls, unique: str, **overrides: str) -> Any:
    env = {
        "WHALLI_ENV": "test",
        "WHALLI_DATABASE_URL": urls.database_url,
        "WHALLI_REDIS_URL": urls.redis_url,
        "WHALLI_S3_ENDPOINT": urls.s3_endpoint,
        "WHALLI_S3_ACCESS_KEY": urls.s3_access_key,
        "WHALLI_S3_SECRET_KEY": urls.s3_secret_key,
        "WHALLI_S3_BUCKET": f"e2e-{unique}",
        "WHALLI_JWT_SECRET": JWT_SECRET,
        "WHALLI_RATE_LIMIT_IP_PER_MIN": "100000",
        "WHALLI_RATE_LIMIT_USER_PER_MIN": "100000",
        "WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP": "1000/60",
        "WHALLI_RATE_LIMIT_LOGIN_PER_IP": "100000/60",
        "WHALLI_PASSWORD_HASH_TIME_COST": "2",
        "WHALLI_DEV_MODELS": "true",
        "WHALLI_OPENAI_API_KEY": "sk-test",
        **overrides,
    }
    return load_settings(env, dotenv=None)


class World:
    def __init__(self, client: AsyncTestClient[Litestar], container: Container) -> None:
        self.client = client
        self.container = container

    async def register(self, name: str) -> dict[str, Any]:
        email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
        response = await self.client.post(
            "/api/auth/register", json={"email": email, "password": PASSWORD, "name": name}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        body["email"] = email
        body["auth"] = {"Authorization": f"Bearer {body['tokens']['accessToken']}"}
        return body

    async def create_admin(self) -> dict[str, str]:
        handler: CreateUserHandler = await resolved(self.container.services.create_user())
        email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
        await handler.execute(CreateUser(email=email, password=PASSWORD, admin=True))
        response = await self.client.post(
            "/api/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['accessToken']}"}


@pytest.fixture
async def world(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[World]:
    container = build_container(_settings(stack_urls, unique))
    async with AsyncTestClient(app=build_app(container.settings(), container)) as client:
        yield World(client, container)


@pytest.fixture
async def strict_world(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[World]:
    """No grace window: a spent refresh token presented again ends the session at once."""
    container = build_container(
        _settings(stack_urls, unique, WHALLI_REFRESH_TOKEN_REUSE_GRACE_S="0")
    )
    async with AsyncTestClient(app=build_app(container.settings(), container)) as client:
        yield World(client, container)


async def test_register_login_refresh_and_logout_work_end_to_end(strict_world: World) -> None:
    world = strict_world
    alice = await world.register("alice")
    me = await world.client.get("/api/auth/me", headers=alice["auth"])
    assert me.status_code == 200
    assert me.json()["email"] == alice["email"]
    assert me.json()["role"] == "user"

    refreshed = await world.client.post(
        "/api/auth/refresh", json={"refreshToken": alice["tokens"]["refreshToken"]}
    )
    assert refreshed.status_code == 200
    successor = refreshed.json()["refreshToken"]

    reused = await world.client.post(
        "/api/auth/refresh", json={"refreshToken": alice["tokens"]["refreshToken"]}
    )
    assert reused.status_code == 401
    # reuse revoked the whole family: the successor is dead too, and so is the access token
    assert (
        await world.client.post("/api/auth/refresh", json={"refreshToken": successor})
    ).status_code == 401
    assert (await world.client.get("/api/auth/me", headers=alice["auth"])).status_code == 401

    login = await world.client.post(
        "/api/auth/login", json={"email": alice["email"], "password": PASSWORD}
    )
    assert login.status_code == 200
    tokens = login.json()
    auth = {"Authorization": f"Bearer {tokens['accessToken']}"}
    assert (await world.client.get("/api/auth/me", headers=auth)).status_code == 200
    logout = await world.client.post(
        "/api/auth/logout", json={"refreshToken": tokens["refreshToken"]}
    )
    assert logout.status_code == 204
    assert (await world.client.get("/api/auth/me", headers=auth)).status_code == 401


async def test_a_second_tab_refreshing_the_same_token_right_after_stays_signed_in(
    world: World,
) -> None:
    """The default grace window (10 s): both tabs get working pairs, nothing is revoked."""
    alice = await world.register("alice")
    body = {"refreshToken": alice["tokens"]["refreshToken"]}
    tab_a = await world.client.post("/api/auth/refresh", json=body)
    tab_b = await world.client.post("/api/auth/refresh", json=body)
    assert (tab_a.status_code, tab_b.status_code) == (200, 200), tab_b.text
    assert tab_a.json()["refreshToken"] != tab_b.json()["refreshToken"]
    for tab in (tab_a, tab_b):
        auth = {"Authorization": f"Bearer {tab.json()['accessToken']}"}
        assert (await world.client.get("/api/auth/me", headers=auth)).status_code == 200
        again = await world.client.post(
            "/api/auth/refresh", json={"refreshToken": tab.json()["refreshToken"]}
        )
        assert again.status_code == 200
    assert (await world.client.get("/api/auth/me", headers=alice["auth"])).status_code == 200


async def test_unknown_email_and_wrong_password_give_the_same_answer(world: World) -> None:
    alice = await world.register("alice")
    wrong = await world.client.post(
        "/api/auth/login", json={"email": alice["email"], "password": "not the password"}
    )
    unknown = await world.client.post(
        "/api/auth/login", json={"email": "nobody-" + alice["email"], "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"]
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_a_duplicate_registration_is_a_conflict(world: World) -> None:
    alice = await world.register("alice")
    again = await world.client.post(
        "/api/auth/register", json={"email": alice["email"].upper(), "password": PASSWORD}
    )
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


async def test_common_and_breached_passwords_are_refused_and_a_down_breach_service_blocks_nothing(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    hibp = FakePwnedPasswords().start()
    breached = f"breached {unique}"
    hibp.breach(breached, 12)
    container = build_container(_settings(stack_urls, unique, WHALLI_PWNED_PASSWORDS_URL=hibp.url))
    email = f"screened-{unique}@example.com"
    try:
        async with AsyncTestClient(app=build_app(container.settings(), container)) as client:

            async def register(password: str) -> Any:
                return await client.post(
                    "/api/auth/register", json={"email": email, "password": password}
                )

            common, pwned = await register("Password123"), await register(breached)
            hibp.failing = True
            during_outage = await register(PASSWORD)
    finally:
        hibp.stop()

    assert (common.status_code, common.json()["rule"]) == (422, "common")
    assert (pwned.status_code, pwned.json()["rule"]) == (422, "breached")
    assert breached not in pwned.text
    assert len(hibp.requests) == 2  # the common password never left the process
    # the refusals stored nothing (the email was still free), and the outage blocked nothing
    assert during_outage.status_code == 201, during_outage.text


async def test_another_users_ids_answer_404_on_every_project_member_and_key_route(
    world: World,
) -> None:
    alice, bob = await world.register("alice"), await world.register("bob")
    project = (
        await world.client.post("/api/projects", json={"name": "Secret"}, headers=alice["auth"])
    ).json()
    key = (await world.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])).json()
    pid, kid, aid = project["id"], key["id"], alice["user"]["id"]
    calls = [
        ("GET", f"/api/projects/{pid}", None),
        ("PATCH", f"/api/projects/{pid}", {"name": "mine now"}),
        ("DELETE", f"/api/projects/{pid}", None),
        ("GET", f"/api/projects/{pid}/members", None),
        ("POST", f"/api/projects/{pid}/members", {"email": bob["email"], "role": "owner"}),
        ("PATCH", f"/api/projects/{pid}/members/{aid}", {"role": "viewer"}),
        ("DELETE", f"/api/projects/{pid}/members/{aid}", None),
        ("DELETE", f"/api/keys/{kid}", None),
    ]
    for method, path, body in calls:
        response = await world.client.request(method, path, json=body, headers=bob["auth"])
        missing = await world.client.request(
            method, path.replace(pid, str(uuid.uuid4())).replace(kid, str(uuid.uuid4())),
            json=body, headers=bob["auth"],
        )  # fmt: skip
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == missing.json()["code"], (method, path)
    # and nothing changed for alice
    still = await world.client.get(f"/api/projects/{pid}", headers=alice["auth"])
    assert still.status_code == 200
    assert still.json()["name"] == "Secret"


async def test_an_api_key_authenticates_like_a_token_until_revoked(world: World) -> None:
    alice = await world.register("alice")
    created = await world.client.post("/api/keys", json={"name": "cli"}, headers=alice["auth"])
    assert created.status_code == 201
    secret = created.json()["secret"]
    for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
        me = await world.client.get("/api/auth/me", headers=headers)
        assert me.status_code == 200
        assert me.json()["email"] == alice["email"]
    listed = await world.client.get("/api/keys", headers=alice["auth"])
    assert secret not in listed.text
    revoked = await world.client.delete(f"/api/keys/{created.json()['id']}", headers=alice["auth"])
    assert revoked.status_code == 204
    after = await world.client.get("/api/auth/me", headers={"X-API-Key": secret})
    assert after.status_code == 401


@pytest.fixture
async def clocked_world(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[tuple[World, ManualClock]]:
    clock = ManualClock(datetime.now(UTC))
    container = build_container(_settings(stack_urls, unique))
    container.adapters.clock.override(providers.Object(clock))
    async with AsyncTestClient(app=build_app(container.settings(), container)) as client:
        yield World(client, container), clock


async def test_listing_keys_shows_when_each_was_last_used_on_v1(
    clocked_world: tuple[World, ManualClock],
) -> None:
    world, clock = clocked_world
    alice = await world.register("alice")
    created = await world.client.post("/api/keys", json={"name": "sdk"}, headers=alice["auth"])
    assert created.json()["lastUsedAt"] is None
    bearer = {"Authorization": f"Bearer {created.json()['secret']}"}

    async def last_used() -> str | None:
        listed = await world.client.get("/api/keys", headers=alice["auth"])
        (key,) = listed.json()
        value: str | None = key["lastUsedAt"]
        return value

    assert (await world.client.get("/v1/models", headers=bearer)).status_code == 200
    first = await last_used()
    assert first is not None
    assert datetime.fromisoformat(first) == clock.now()

    clock.advance(30)  # within the interval: not written again
    assert (await world.client.get("/v1/models", headers=bearer)).status_code == 200
    assert await last_used() == first

    clock.advance(31)
    assert (await world.client.get("/v1/models", headers=bearer)).status_code == 200
    assert datetime.fromisoformat(await last_used() or "") == clock.now()


async def test_disabling_or_demoting_takes_effect_on_the_next_request(world: World) -> None:
    admin = await world.create_admin()
    bob = await world.register("bob")
    key = (await world.client.post("/api/keys", json={"name": "k"}, headers=bob["auth"])).json()
    assert (await world.client.get("/api/admin/users", headers=bob["auth"])).status_code == 403

    disabled = await world.client.patch(
        f"/api/admin/users/{bob['user']['id']}", json={"disabled": True}, headers=admin
    )
    assert disabled.status_code == 200
    assert (await world.client.get("/api/auth/me", headers=bob["auth"])).status_code == 401
    assert (
        await world.client.get("/api/auth/me", headers={"X-API-Key": key["secret"]})
    ).status_code == 401
    assert (
        await world.client.post(
            "/api/auth/refresh", json={"refreshToken": bob["tokens"]["refreshToken"]}
        )
    ).status_code == 401

    second_admin = await world.create_admin()
    me = (await world.client.get("/api/auth/me", headers=second_admin)).json()
    demoted = await world.client.patch(
        f"/api/admin/users/{me['id']}", json={"role": "user"}, headers=admin
    )
    assert demoted.status_code == 200
    assert (await world.client.get("/api/admin/users", headers=second_admin)).status_code == 403


async def test_an_admins_api_key_is_refused_on_every_admin_route_and_their_session_is_not(
    world: World,
) -> None:
    admin = await world.create_admin()
    bob = await world.register("bob")
    created = await world.client.post("/api/keys", json={"name": "script"}, headers=admin)
    assert created.status_code == 201, created.text
    by_key = {"X-API-Key": created.json()["secret"]}
    bob_url = f"/api/admin/users/{bob['user']['id']}"
    routes = [
        ("GET", "/api/admin/users", None),
        ("PATCH", bob_url, {"plan": Plan.PRO.value}),
        ("GET", f"{bob_url}/usage", None),
        ("GET", "/api/admin/feedback", None),
    ]

    for method, url, body in routes:
        refused = await world.client.request(method, url, json=body, headers=by_key)
        assert refused.status_code == 403, (url, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert (refused.json()["status"], refused.json()["code"]) == (403, "api_key_not_allowed")
        assert bob["email"] not in refused.text
    assert (await world.client.get("/api/auth/me", headers=bob["auth"])).json()["plan"] == "free"
    assert (await world.client.get("/api/usage", headers=by_key)).status_code == 200

    for method, url, body in routes:
        allowed = await world.client.request(method, url, json=body, headers=admin)
        assert allowed.status_code == 200, (url, allowed.text)


async def test_a_removed_member_loses_access_on_the_next_request(world: World) -> None:
    alice, bob = await world.register("alice"), await world.register("bob")
    pid = (
        await world.client.post("/api/projects", json={"name": "Team"}, headers=alice["auth"])
    ).json()["id"]
    added = await world.client.post(
        f"/api/projects/{pid}/members",
        json={"email": bob["email"], "role": "viewer"},
        headers=alice["auth"],
    )
    assert added.status_code in (200, 201)
    assert (await world.client.get(f"/api/projects/{pid}", headers=bob["auth"])).status_code == 200
    # a viewer may read but not write
    assert (
        await world.client.patch(f"/api/projects/{pid}", json={"name": "x"}, headers=bob["auth"])
    ).status_code == 403
    removed = await world.client.delete(
        f"/api/projects/{pid}/members/{bob['user']['id']}", headers=alice["auth"]
    )
    assert removed.status_code == 204
    assert (await world.client.get(f"/api/projects/{pid}", headers=bob["auth"])).status_code == 404


async def test_the_model_list_follows_the_plan(world: World) -> None:
    admin = await world.create_admin()
    bob = await world.register("bob")
    free = {m["id"] for m in (await world.client.get("/api/models", headers=bob["auth"])).json()}
    await world.client.patch(
        f"/api/admin/users/{bob['user']['id']}", json={"plan": Plan.PRO.value}, headers=admin
    )
    pro = {m["id"] for m in (await world.client.get("/api/models", headers=bob["auth"])).json()}
    assert "dev/echo" in free
    assert free < pro
    assert not any(m.startswith("anthropic/") for m in pro)  # no key configured: hidden


async def test_nothing_but_the_public_routes_answers_without_credentials(world: World) -> None:
    app = world.client.app
    assert isinstance(app, Litestar)
    # the stream's unguessable session id is its credential (a browser EventSource sends no
    # headers); it is checked in test_chat_flow; so is a shared chat's link token (checked in
    # tests/unit/http/test_share_routes.py)
    public_prefixes = (
        "/api/health", "/api/metrics", "/api/docs", "/api/auth/", "/api/chat/stream",
        "/api/shared/",
    )  # fmt: skip
    private = {"/api/auth/me", "/api/auth/logout-all", "/api/auth/password"}
    checked = 0
    for route in app.routes:
        path = route.path
        if path.startswith(public_prefixes) and path not in private:
            continue
        concrete = path.replace("{provider:str}", "github")
        # every id in a path (chat_id, preset_id, ...): any route added later is checked too
        concrete = re.sub(r"\{\w+:uuid\}", lambda _: str(uuid.uuid4()), concrete)
        for method in sorted(getattr(route, "methods", set()) - {"OPTIONS", "HEAD"}):
            response = await world.client.request(method, concrete, json={})
            assert response.status_code == 401, (method, path, response.status_code)
            checked += 1
    assert checked >= 15


async def test_the_per_user_limit_is_exact_and_answers_429_with_headers(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    container = build_container(_settings(stack_urls, unique, WHALLI_RATE_LIMIT_USER_PER_MIN="10"))
    async with AsyncTestClient(app=build_app(container.settings(), container)) as client:
        alice = await World(client, container).register("alice")
        responses = await asyncio.gather(
            *(client.get("/api/auth/me", headers=alice["auth"]) for _ in range(25))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 10
    assert statuses.count(429) == 15
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-limit"] == "10"
    assert limited.headers["ratelimit-remaining"] == "0"
    ok = next(r for r in responses if r.status_code == 200)
    assert "ratelimit-reset" in ok.headers
