"""/api/auth and the app-wide guard, through the HTTP app on the fake (in-memory) container."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from litestar import Controller, Litestar, get
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient

from tests.unit.http.fakes import TEST_JWT_SECRET, FakeContainer, FakeProbe
from tests.unit.http.routes import ProbeController
from whalli.adapters.structlog.logging import configure_logging, reset_logging
from whalli.config import Settings
from whalli.domain.model.api_keys import API_KEY_PREFIX, ApiKey
from whalli.domain.model.principal import Principal
from whalli.domain.model.users import Role
from whalli.entrypoints.http.app import create_app

PROBLEM_JSON = "application/problem+json"
PASSWORD = "correct horse battery"


class WhoAmIController(Controller):
    """A private route (no ``opt``): only the guard stands in front of it."""

    path = "/api/test-private"

    @get("/whoami")
    async def whoami(self, principal: NamedDependency[Principal]) -> dict[str, Any]:
        return {"email": principal.user.email, "apiKey": principal.api_key_id is not None}


@pytest.fixture
def app(container: FakeContainer) -> Litestar:
    return create_app(container, extra_route_handlers=[ProbeController, WhoAmIController])


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as client:
        yield client


async def _register(
    client: AsyncTestClient[Litestar], email: str = "ada@example.com"
) -> dict[str, Any]:
    response = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"].startswith("Bearer")


# --- the flow ------------------------------------------------------------------------------------
async def test_register_me_refresh_and_logout_work_end_to_end(
    client: AsyncTestClient[Litestar],
) -> None:
    registered = await _register(client, "Ada@Example.com")
    user, tokens = registered["user"], registered["tokens"]
    assert (user["email"], user["role"], user["plan"]) == ("ada@example.com", "user", "free")
    assert set(tokens) == {"accessToken", "refreshToken", "expiresIn", "tokenType"}
    assert tokens["tokenType"] == "Bearer"

    me = await client.get("/api/auth/me", headers=_bearer(tokens["accessToken"]))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]
    assert "passwordHash" not in me.text

    refreshed = await client.post(
        "/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
    )
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["refreshToken"] != tokens["refreshToken"]

    logout = await client.post("/api/auth/logout", json={"refreshToken": new["refreshToken"]})
    assert logout.status_code == 204
    _assert_401(await client.get("/api/auth/me", headers=_bearer(new["accessToken"])))


async def test_login_answers_tokens_that_are_never_cached(
    client: AsyncTestClient[Litestar],
) -> None:
    await _register(client)

    response = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    me = await client.get("/api/auth/me", headers=_bearer(response.json()["accessToken"]))
    assert me.json()["email"] == "ada@example.com"


async def test_a_reused_refresh_token_is_401_and_ends_the_session(
    client: AsyncTestClient[Litestar],
) -> None:
    tokens = (await _register(client))["tokens"]
    new = (
        await client.post("/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    ).json()

    reused = await client.post("/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]})

    _assert_401(reused)
    assert reused.json()["code"] == "refresh_token_reused"
    _assert_401(await client.get("/api/auth/me", headers=_bearer(new["accessToken"])))


async def test_logout_all_needs_a_principal_and_ends_every_session(
    client: AsyncTestClient[Litestar],
) -> None:
    first = (await _register(client))["tokens"]
    second = (
        await client.post(
            "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
    ).json()

    _assert_401(await client.post("/api/auth/logout-all"))
    done = await client.post("/api/auth/logout-all", headers=_bearer(first["accessToken"]))

    assert done.status_code == 204
    for tokens in (first, second):
        _assert_401(await client.get("/api/auth/me", headers=_bearer(tokens["accessToken"])))


async def test_logout_of_an_unknown_token_is_still_204(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/api/auth/logout", json={"refreshToken": "tok" + "0" * 40})

    assert response.status_code == 204


# --- errors --------------------------------------------------------------------------------------
async def test_wrong_password_and_unknown_email_are_the_same_401(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    await _register(client)

    wrong = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": "nope nope nope"}
    )
    unknown = await client.post(
        "/api/auth/login", json={"email": "who@example.com", "password": PASSWORD}
    )

    _assert_401(wrong)
    _assert_401(unknown)
    drop = ("requestId",)
    assert {k: v for k, v in wrong.json().items() if k not in drop} == {
        k: v for k, v in unknown.json().items() if k not in drop
    }
    assert container.hasher.dummy_verifications == 1


async def test_sign_up_errors_are_problems(client: AsyncTestClient[Litestar]) -> None:
    await _register(client)

    taken = await client.post(
        "/api/auth/register", json={"email": "ADA@example.com", "password": PASSWORD}
    )
    short = await client.post(
        "/api/auth/register", json={"email": "bob@example.com", "password": "short"}
    )
    unknown_field = await client.post(
        "/api/auth/register",
        json={"email": "eve@example.com", "password": PASSWORD, "role": "admin"},
    )

    assert (taken.status_code, taken.json()["code"]) == (409, "email_taken")
    assert (short.status_code, short.json()["rule"]) == (422, "min_length")
    assert unknown_field.status_code == 400
    assert "role" in unknown_field.text


async def test_a_common_password_is_a_422_problem_naming_the_rule_and_creates_nothing(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    response = await client.post(
        "/api/auth/register", json={"email": "bob@example.com", "password": "Password123"}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert (problem["code"], problem["rule"]) == ("invalid_password", "common")
    assert "most common passwords" in problem["detail"]
    assert "password123" not in response.text.lower()
    assert container.store.tables["users"] == {}


async def test_passwords_never_reach_the_log(
    client: AsyncTestClient[Litestar], tmp_path: Path
) -> None:
    configure_logging("debug", str(tmp_path))
    try:
        await _register(client)
        await client.post(
            "/api/auth/login", json={"email": "ada@example.com", "password": "wrong-secret-1"}
        )
        await client.post("/api/auth/register", json={"email": "x@example.com", "password": 5})
    finally:
        reset_logging()

    text = (tmp_path / "whalli.log").read_text()
    assert "/api/auth/login" in text
    assert PASSWORD not in text
    assert "wrong-secret-1" not in text


async def test_two_concurrent_first_registrations_make_nobody_admin(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    first, second = await asyncio.gather(
        _register(client, "one@example.com"), _register(client, "two@example.com")
    )

    assert first["user"]["role"] == second["user"]["role"] == "user"
    assert all(u.role is Role.USER for u in container.store.tables["users"].values())


# --- the guard -----------------------------------------------------------------------------------
def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forgeries(access: str, refresh: str) -> dict[str, str]:
    claims = _claims(access)
    typ = {"typ": "at+jwt"}
    return {
        "alg none": f"{_b64({'alg': 'none', **typ})}.{_b64(claims)}.",
        "HS512": jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS512", headers=typ),
        "wrong aud": jwt.encode(
            {**claims, "aud": "someone-else"}, TEST_JWT_SECRET, algorithm="HS256", headers=typ
        ),
        "other key": jwt.encode(claims, "x" * 40, algorithm="HS256", headers=typ),
        "refresh token": refresh,
        "garbage": "abc.def.ghi",
    }


async def test_forged_tokens_are_401_problems(client: AsyncTestClient[Litestar]) -> None:
    tokens = (await _register(client))["tokens"]

    for name, forged in _forgeries(tokens["accessToken"], tokens["refreshToken"]).items():
        response = await client.get("/api/test-private/whoami", headers=_bearer(forged))
        _assert_401(response)
        assert response.json()["detail"] == "The token is invalid or has expired.", name


async def test_an_expired_access_token_is_401(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    tokens = (await _register(client))["tokens"]
    assert (await client.get("/api/auth/me", headers=_bearer(tokens["accessToken"]))).is_success

    container.clock.advance(timedelta(seconds=tokens["expiresIn"] + 31))

    _assert_401(await client.get("/api/auth/me", headers=_bearer(tokens["accessToken"])))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YWRhOnB3"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer a.b.c", "X-API-Key": f"{API_KEY_PREFIX}{'k' * 43}"},
    ],
    ids=["none", "basic", "empty bearer", "two credentials"],
)
async def test_a_private_route_without_one_valid_credential_is_401(
    client: AsyncTestClient[Litestar], headers: dict[str, str]
) -> None:
    _assert_401(await client.get("/api/test-private/whoami", headers=headers))


async def test_an_api_key_works_as_bearer_and_as_x_api_key(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    user_id = (await _register(client))["user"]["id"]
    secret = f"{API_KEY_PREFIX}{'k' * 43}"
    async with container.uow() as uow:
        user = await uow.users.find_by_email("ada@example.com")
        assert user is not None
        assert str(user.id) == user_id
        key = ApiKey.create(
            id=container.ids.new_id(), user_id=user.id, name="ci", secret=secret,
            now=container.clock.now(),
        )  # fmt: skip
        await uow.api_keys.add(key)
        await uow.commit()

    for headers in (_bearer(secret), {"X-API-Key": secret}):
        response = await client.get("/api/test-private/whoami", headers=headers)
        assert response.json() == {"email": "ada@example.com", "apiKey": True}


async def test_public_routes_need_no_credentials(client: AsyncTestClient[Litestar]) -> None:
    for path in ("/api/health", "/api/health/ready", "/api/metrics", "/api/docs"):
        assert (await client.get(path)).status_code == 200, path
    schema = await client.get("/api/docs/openapi.json")
    assert schema.status_code == 200
    assert "/api/auth/login" in schema.json()["paths"]


async def test_a_rejected_token_is_challenged_as_invalid_and_a_missing_one_plainly(
    client: AsyncTestClient[Litestar],
) -> None:
    rejected = await client.get("/api/test-private/whoami", headers=_bearer("a.b.c"))
    missing = await client.get("/api/test-private/whoami")

    assert rejected.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["code"] == "unauthenticated"


async def test_a_refused_genuine_token_counts_against_the_ip_not_its_user(
    probes: list[FakeProbe],
) -> None:
    # The guard charges the user a genuine token names while the database is read; when the
    # session turns out to be over, that count is given back (a stolen token the user has
    # revoked cannot spend their budget) and the request counts against the client IP.
    settings = Settings(env="test", rate_limit_user_per_min=5, rate_limit_ip_per_min=50)
    app = create_app(FakeContainer(settings, probes), extra_route_handlers=[WhoAmIController])
    async with AsyncTestClient(app=app) as client:
        tokens = (await _register(client))["tokens"]
        await client.post("/api/auth/logout", json={"refreshToken": tokens["refreshToken"]})

        refused = await client.get(
            "/api/test-private/whoami", headers=_bearer(tokens["accessToken"])
        )
        _assert_401(refused)
        login = await client.post(
            "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        )
        fresh = login.json()["accessToken"]
        accepted = await client.get("/api/test-private/whoami", headers=_bearer(fresh))

    assert accepted.status_code == 200
    assert accepted.headers["ratelimit-limit"] == "5"
    assert (
        accepted.headers["ratelimit-remaining"] == "4"
    )  # this one alone: the refused one given back
    assert int(refused.headers["ratelimit-remaining"]) < 50  # the IP's budget counted it too
