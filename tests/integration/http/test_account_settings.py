"""Changing one's password and name through the real app, container, Postgres and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.integration.http.test_identity_end_to_end import PASSWORD, World, _settings
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.entrypoints.http.asgi import build_app

NEW_PASSWORD = "an entirely new passphrase"


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
    # three password checks per account and IP a minute, logins and password changes together
    settings = _settings(stack_urls, unique, WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP="3/60")
    container = build_container(settings)
    async with AsyncTestClient(app=build_app(container.settings(), container)) as client:
        yield World(client, container)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _login(world: World, email: str, password: str) -> Any:
    return await world.client.post("/api/auth/login", json={"email": email, "password": password})


async def _change(world: World, headers: dict[str, str], current: str, new: str) -> Any:
    body = {"currentPassword": current, "newPassword": new}
    return await world.client.post("/api/auth/password", json=body, headers=headers)


async def test_changing_the_password_signs_out_every_session_but_the_new_one(
    world: World,
) -> None:
    alice = await world.register("alice")
    other = await _login(world, alice["email"], PASSWORD)
    assert other.status_code == 200
    key = await world.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
    bob = await world.register("bob")

    changed = await _change(world, alice["auth"], PASSWORD, NEW_PASSWORD)

    assert changed.status_code == 200, changed.text
    assert changed.headers["cache-control"] == "no-store"
    tokens = changed.json()
    assert set(tokens) == {"accessToken", "refreshToken", "expiresIn", "tokenType"}
    # every earlier session is over: its access token at once, its refresh token too
    for old in (alice["tokens"], other.json()):
        me = await world.client.get("/api/auth/me", headers=_bearer(old["accessToken"]))
        assert me.status_code == 401
        refreshed = await world.client.post(
            "/api/auth/refresh", json={"refreshToken": old["refreshToken"]}
        )
        assert refreshed.status_code == 401
    # the new pair works, and so does the new password, not the old one
    me = await world.client.get("/api/auth/me", headers=_bearer(tokens["accessToken"]))
    assert (me.status_code, me.json()["email"]) == (200, alice["email"])
    refreshed = await world.client.post(
        "/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
    )
    assert refreshed.status_code == 200
    assert (await _login(world, alice["email"], PASSWORD)).status_code == 401
    assert (await _login(world, alice["email"], NEW_PASSWORD)).status_code == 200
    # API keys are not sessions, and another user is not touched
    by_key = await world.client.get("/api/auth/me", headers={"X-API-Key": key.json()["secret"]})
    assert by_key.status_code == 200
    assert (await world.client.get("/api/auth/me", headers=bob["auth"])).status_code == 200


async def test_a_wrong_current_password_is_401_and_changes_nothing(world: World) -> None:
    alice = await world.register("alice")

    wrong = await _change(world, alice["auth"], "not the password", NEW_PASSWORD)

    assert wrong.status_code == 401
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert wrong.json()["code"] == "invalid_credentials"
    assert (await world.client.get("/api/auth/me", headers=alice["auth"])).status_code == 200
    assert (await _login(world, alice["email"], PASSWORD)).status_code == 200
    assert (await _login(world, alice["email"], NEW_PASSWORD)).status_code == 401


@pytest.mark.parametrize(("new", "rule"), [("password123", "common"), (PASSWORD, "unchanged")])
async def test_a_refused_new_password_is_422_with_its_rule_and_changes_nothing(
    world: World, new: str, rule: str
) -> None:
    alice = await world.register("alice")

    refused = await _change(world, alice["auth"], PASSWORD, new)

    assert refused.status_code == 422, refused.text
    assert (refused.json()["code"], refused.json()["rule"]) == ("invalid_password", rule)
    assert new not in refused.text
    assert (await world.client.get("/api/auth/me", headers=alice["auth"])).status_code == 200
    assert (await _login(world, alice["email"], PASSWORD)).status_code == 200


async def test_password_attempts_are_throttled_like_logins_of_that_account(
    strict_world: World,
) -> None:
    world = strict_world
    alice = await world.register("alice")

    statuses = [
        (await _change(world, alice["auth"], f"guess number {n}", NEW_PASSWORD)).status_code
        for n in range(3)
    ]
    throttled = await _change(world, alice["auth"], PASSWORD, NEW_PASSWORD)

    assert statuses == [401, 401, 401]
    assert throttled.status_code == 429, throttled.text
    assert int(throttled.headers["retry-after"]) >= 1
    # the right password did not get through while throttled, nor does a login
    assert (await _login(world, alice["email"], NEW_PASSWORD)).status_code == 429
    assert (await world.client.get("/api/auth/me", headers=alice["auth"])).status_code == 200


async def test_an_api_key_cannot_change_the_password(world: World) -> None:
    alice = await world.register("alice")
    key = await world.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])

    refused = await _change(world, {"X-API-Key": key.json()["secret"]}, PASSWORD, NEW_PASSWORD)

    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "api_key_not_allowed"
    assert (await world.client.get("/api/auth/me", headers=alice["auth"])).status_code == 200
    assert (await _login(world, alice["email"], PASSWORD)).status_code == 200


async def test_password_changes_with_an_api_key_spend_none_of_the_accounts_login_limit(
    strict_world: World,
) -> None:
    world = strict_world
    alice = await world.register("alice")
    key = await world.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])
    api_key = {"X-API-Key": key.json()["secret"]}

    refused = [(await _change(world, api_key, PASSWORD, NEW_PASSWORD)) for _ in range(4)]

    assert [r.status_code for r in refused] == [403] * 4, refused[-1].text
    assert (await _login(world, alice["email"], PASSWORD)).status_code == 200
    changed = await _change(world, alice["auth"], PASSWORD, NEW_PASSWORD)
    assert changed.status_code == 200, changed.text


async def test_renaming_shows_on_me(world: World) -> None:
    alice = await world.register("alice")

    renamed = await world.client.patch(
        "/api/auth/me", json={"name": "  Alice Liddell "}, headers=alice["auth"]
    )

    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Alice Liddell"
    assert renamed.json()["email"] == alice["email"]
    me = await world.client.get("/api/auth/me", headers=alice["auth"])
    assert me.json()["name"] == "Alice Liddell"
    unchanged = await world.client.patch("/api/auth/me", json={}, headers=alice["auth"])
    assert (unchanged.status_code, unchanged.json()["name"]) == (200, "Alice Liddell")
    too_long = await world.client.patch(
        "/api/auth/me", json={"name": "x" * 201}, headers=alice["auth"]
    )
    assert too_long.status_code == 400
    me = await world.client.get("/api/auth/me", headers=alice["auth"])
    assert me.json()["name"] == "Alice Liddell"


async def test_both_endpoints_need_credentials(world: World) -> None:
    app = world.client.app
    assert isinstance(app, Litestar)
    body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}

    password = await world.client.post("/api/auth/password", json=body)
    rename = await world.client.patch("/api/auth/me", json={"name": "Mallory"})

    assert password.status_code == rename.status_code == 401
    assert password.headers["www-authenticate"].startswith("Bearer")
