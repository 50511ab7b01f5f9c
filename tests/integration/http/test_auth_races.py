"""Races and robustness of sign-in and sessions, as real users meet them: the real app served by
uvicorn, Postgres and Redis.

Where two requests must be in flight together, the test holds a Postgres row lock from a
connection of its own (``held``): the requests queue on it at a known statement (the wait is
seen in ``pg_stat_activity``), then the lock is let go. Postgres hands a contended row to its
waiters in arrival order, so the order is known too. No sleep decides an outcome.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from dependency_injector import providers

from tests.integration.http.test_identity_end_to_end import PASSWORD, World, _settings
from tests.support.live_server import live_server
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.clock import ManualClock
from whalli.container import build_container
from whalli.domain.model.tokens import hash_refresh_secret
from whalli.entrypoints.http.asgi import build_app

NEW_PASSWORD = "a brand new passphrase for whalli"


class Race:
    def __init__(self, client: httpx.AsyncClient, world: World, database_url: str) -> None:
        self.client, self.world, self.database_url = client, world, database_url

    async def refresh(self, token: str) -> httpx.Response:
        return await self.client.post("/api/auth/refresh", json={"refreshToken": token})

    async def me(self, access_token: str) -> httpx.Response:
        return await self.client.get(
            "/api/auth/me", headers={"Authorization": f"Bearer {access_token}"}
        )

    async def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post(
            "/api/auth/login", json={"email": email, "password": password}
        )

    @asynccontextmanager
    async def held(self, query: str, params: dict[str, Any]) -> AsyncIterator[None]:
        """Hold the row lock ``query`` (a ``SELECT ... FOR UPDATE``) takes, until the block ends."""
        conn = await psycopg.AsyncConnection.connect(self.database_url)
        async with conn, conn.transaction():
            row = await (await conn.execute(query, params)).fetchone()
            assert row is not None, "nothing to lock"
            yield

    async def waiting(self, table: str, count: int) -> None:
        """Until ``count`` backends wait for a lock in a statement on ``table``."""
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE %(q)s AND pid <> pg_backend_pid()"
        )
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            for _ in range(2000):
                row = await (await conn.execute(query, {"q": f"%{table}%"})).fetchone()
                if row is not None and row[0] >= count:
                    return
                await asyncio.sleep(0.005)
        raise AssertionError(f"{count} requests never waited on {table}")

    async def started(self, coro: Any, table: str, count: int) -> asyncio.Task[httpx.Response]:
        """Start ``coro`` and return once it (the ``count``-th waiter) waits on ``table``."""
        task = asyncio.ensure_future(coro)
        await self.waiting(table, count)
        return task

    async def family_rows(self, refresh_token: str) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            cur = await conn.execute(
                "SELECT id, parent_id, used_at, revoked_at FROM refresh_tokens WHERE family_id = "
                "(SELECT family_id FROM refresh_tokens WHERE token_hash = %(h)s) "
                "ORDER BY created_at",
                {"h": hash_refresh_secret(refresh_token)},
            )
            return list(await cur.fetchall())


_LOCK_TOKEN = "SELECT id FROM refresh_tokens WHERE token_hash = %(h)s FOR UPDATE"
_LOCK_KEY = "SELECT id FROM api_keys WHERE id = %(id)s FOR UPDATE"


@asynccontextmanager
async def _race_app(
    stack_urls: StackUrls, unique: str, clock: ManualClock | None = None, **env: str
) -> AsyncIterator[Race]:
    container = build_container(_settings(stack_urls, unique, **env))
    if clock is not None:
        container.adapters.clock.override(providers.Object(clock))
    app = build_app(container.settings(), container)
    async with live_server(app) as client:
        yield Race(client, World(client, container), stack_urls.database_url)  # type: ignore[arg-type]


@pytest.fixture
async def race(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Race]:
    async with _race_app(stack_urls, unique) as race:
        yield race


def _lock_token(token: str) -> tuple[str, dict[str, Any]]:
    return _LOCK_TOKEN, {"h": hash_refresh_secret(token)}


# --- refresh vs refresh ---------------------------------------------------------------------------
async def test_a_token_replayed_after_its_rotation_revokes_the_whole_family(
    clocked_race: tuple[Race, ManualClock],
) -> None:
    """By design (README, RefreshSessionHandler): a spent token presented again, here after the
    rotation and past the grace window, revokes the family; both answers are clean 401s."""
    race, clock = clocked_race
    alice = await race.world.register("alice")
    token = alice["tokens"]["refreshToken"]
    rotated = await race.refresh(token)
    assert rotated.status_code == 200
    clock.advance(11)
    replay = await race.refresh(token)
    assert replay.status_code == 401
    assert replay.headers["content-type"].startswith("application/problem+json")
    assert (await race.refresh(rotated.json()["refreshToken"])).status_code == 401
    assert (await race.me(rotated.json()["accessToken"])).status_code == 401
    rows = await race.family_rows(token)
    assert len(rows) == 2
    assert all(revoked is not None for *_, revoked in rows)


async def test_two_tabs_refreshing_one_token_at_the_same_moment_both_stay_signed_in(
    race: Race,
) -> None:
    """The leftover of the last audit: two refreshes of one token in flight together used to
    end the session (the second saw the token spent). Within the grace window the second one
    waits for the first's lock, then gets a sibling successor; nothing is revoked."""
    alice = await race.world.register("alice")
    token = alice["tokens"]["refreshToken"]
    async with race.held(*_lock_token(token)):
        tab_a = await race.started(race.refresh(token), "refresh_tokens", 1)
        tab_b = await race.started(race.refresh(token), "refresh_tokens", 2)
    a, b = await tab_a, await tab_b
    assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
    rows = await race.family_rows(token)
    assert len(rows) == 3
    assert all(revoked is None for *_, revoked in rows)
    root = rows[0][0]
    assert [parent for _, parent, *_ in rows[1:]] == [root, root]
    for pair in (a.json(), b.json()):
        assert (await race.me(pair["accessToken"])).status_code == 200
        assert (await race.refresh(pair["refreshToken"])).status_code == 200


# --- refresh vs the ways a session ends -----------------------------------------------------------
async def test_a_refresh_racing_logout_leaves_no_live_session(race: Race) -> None:
    alice = await race.world.register("alice")
    token = alice["tokens"]["refreshToken"]
    async with race.held(*_lock_token(token)):
        refreshing = await race.started(race.refresh(token), "refresh_tokens", 1)
        # logout holds the account first, as the refresh did (shared): it waits on users
        logout = await race.started(
            race.client.post("/api/auth/logout", json={"refreshToken": token}), "users", 1
        )
    refreshed, out = await refreshing, await logout
    assert out.status_code == 204
    assert refreshed.status_code == 200, refreshed.text  # it held the lock first
    pair = refreshed.json()
    assert (await race.me(pair["accessToken"])).status_code == 401
    assert (await race.refresh(pair["refreshToken"])).status_code == 401
    assert all(revoked is not None for *_, revoked in await race.family_rows(token))


async def test_a_refresh_racing_logout_all_leaves_no_live_session(race: Race) -> None:
    """The laptop refreshes while the user presses "sign out everywhere" on the phone: the
    refresh committed its successor token, and logout-all answered 204, so nothing may be left
    signed in."""
    alice = await race.world.register("alice")
    laptop = alice["tokens"]["refreshToken"]
    phone = (await race.login(alice["email"])).json()
    phone_auth = {"Authorization": f"Bearer {phone['accessToken']}"}
    async with race.held(*_lock_token(laptop)):
        refreshing = await race.started(race.refresh(laptop), "refresh_tokens", 1)
        everywhere = await race.started(
            race.client.post("/api/auth/logout-all", headers=phone_auth), "", 2
        )
    refreshed, out = await refreshing, await everywhere
    assert out.status_code == 204
    assert refreshed.status_code == 200, refreshed.text
    pair = refreshed.json()
    assert (await race.me(phone["accessToken"])).status_code == 401
    leftover = await race.family_rows(laptop)
    assert (await race.me(pair["accessToken"])).status_code == 401, leftover
    assert (await race.refresh(pair["refreshToken"])).status_code == 401, leftover


async def test_a_refresh_racing_a_password_change_leaves_no_other_session(race: Race) -> None:
    """The user changes the password because the refresh token leaked; the thief refreshes at
    that moment. After the change only the session the change opened may be alive."""
    alice = await race.world.register("alice")
    stolen = alice["tokens"]["refreshToken"]
    owner = (await race.login(alice["email"])).json()
    async with race.held(*_lock_token(stolen)):
        thief = await race.started(race.refresh(stolen), "refresh_tokens", 1)
        change = await race.started(
            race.client.post(
                "/api/auth/password",
                json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
                headers={"Authorization": f"Bearer {owner['accessToken']}"},
            ),
            "",  # (it waits for the account the refresh holds, or for the token's row)
            2,
        )
    stolen_pair, changed = await thief, await change
    assert changed.status_code == 200, changed.text
    assert stolen_pair.status_code == 200, stolen_pair.text
    fresh = changed.json()
    assert (await race.me(fresh["accessToken"])).status_code == 200
    leftover = await race.family_rows(stolen)
    assert (await race.me(stolen_pair.json()["accessToken"])).status_code == 401, leftover
    assert (await race.refresh(stolen_pair.json()["refreshToken"])).status_code == 401, leftover


async def test_a_refresh_racing_an_admin_disabling_leaves_no_session_after_reenabling(
    race: Race,
) -> None:
    """Disabling revokes every session (UpdateUserHandler); a refresh in flight at that moment
    must not leave one that comes back to life when the account is enabled again."""
    admin = await race.world.create_admin()
    bob = await race.world.register("bob")
    token = bob["tokens"]["refreshToken"]
    user_url = f"/api/admin/users/{bob['user']['id']}"
    async with race.held(*_lock_token(token)):
        refreshing = await race.started(race.refresh(token), "refresh_tokens", 1)
        disabling = await race.started(
            race.client.patch(user_url, json={"disabled": True}, headers=admin),
            "",  # (it waits for the account the refresh holds)
            2,
        )
    refreshed, disabled = await refreshing, await disabling
    assert disabled.status_code == 200, disabled.text
    assert refreshed.status_code == 200, refreshed.text
    pair = refreshed.json()
    assert (await race.me(pair["accessToken"])).status_code == 401  # disabled: refused anyway
    enabled = await race.client.patch(user_url, json={"disabled": False}, headers=admin)
    assert enabled.status_code == 200
    leftover = await race.family_rows(token)
    assert (await race.me(pair["accessToken"])).status_code == 401, leftover
    assert (await race.refresh(pair["refreshToken"])).status_code == 401, leftover


async def test_logins_racing_an_admin_disabling_never_sign_in_a_disabled_account(
    race: Race,
) -> None:
    admin = await race.world.create_admin()
    bob = await race.world.register("bob")
    logins = [race.login(bob["email"]) for _ in range(4)]
    disabling = race.client.patch(
        f"/api/admin/users/{bob['user']['id']}", json={"disabled": True}, headers=admin
    )
    *answers, disabled = await asyncio.gather(*logins, disabling)
    assert disabled.status_code == 200
    assert {a.status_code for a in answers} <= {200, 401}, [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 200:
            assert (await race.me(answer.json()["accessToken"])).status_code == 401
            assert (await race.refresh(answer.json()["refreshToken"])).status_code == 401
    assert (await race.login(bob["email"])).status_code == 401


# --- registration ---------------------------------------------------------------------------------
async def test_registering_one_email_twice_at_once_is_one_201_and_one_409(race: Race) -> None:
    email = f"twice-{uuid.uuid4().hex[:10]}@example.com"
    answers = await asyncio.gather(
        *(
            race.client.post("/api/auth/register", json={"email": e, "password": PASSWORD})
            for e in (email, email.upper(), email, f" {email}")
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 409, 409, 409], [a.text for a in answers]
    assert (await race.login(email)).status_code == 200


# --- API keys -------------------------------------------------------------------------------------
async def test_a_request_in_flight_when_its_key_is_revoked_finishes_and_the_next_is_refused(
    race: Race,
) -> None:
    alice = await race.world.register("alice")
    key = (await race.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])).json()
    by_key = {"X-API-Key": key["secret"]}
    answers = await asyncio.gather(
        *(race.client.get("/api/auth/me", headers=by_key) for _ in range(5)),
        race.client.delete(f"/api/keys/{key['id']}", headers=alice["auth"]),
        *(race.client.get("/api/auth/me", headers=by_key) for _ in range(5)),
    )
    assert answers[5].status_code == 204
    assert {a.status_code for a in answers} <= {200, 204, 401}
    assert (await race.client.get("/api/auth/me", headers=by_key)).status_code == 401
    assert (await race.client.get("/v1/models", headers=by_key)).status_code == 401


@pytest.fixture
async def clocked_race(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[tuple[Race, ManualClock]]:
    clock = ManualClock(datetime.now(UTC))
    async with _race_app(stack_urls, unique, clock) as race:
        yield race, clock


async def test_two_revocations_of_one_key_at_once_keep_the_first_revocation_time(
    clocked_race: tuple[Race, ManualClock],
) -> None:
    """RevokeApiKeyHandler: "revoking a revoked key changes nothing (the first revocation time
    is kept)" -- also when the two revocations run at once (two clicks, two devices)."""
    race, clock = clocked_race
    alice = await race.world.register("alice")
    key = (await race.client.post("/api/keys", json={"name": "ci"}, headers=alice["auth"])).json()
    url = f"/api/keys/{key['id']}"
    async with race.held(_LOCK_KEY, {"id": uuid.UUID(key["id"])}):
        first = await race.started(race.client.delete(url, headers=alice["auth"]), "api_keys", 1)
        first_time = clock.now()
        clock.advance(30)
        second = await race.started(race.client.delete(url, headers=alice["auth"]), "api_keys", 2)
    assert ((await first).status_code, (await second).status_code) == (204, 204)
    (listed,) = (await race.client.get("/api/keys", headers=alice["auth"])).json()
    assert listed["revokedAt"] is not None
    assert datetime.fromisoformat(listed["revokedAt"]) == first_time


# --- rate limits ----------------------------------------------------------------------------------
async def test_a_burst_from_one_user_passes_exactly_the_limit_with_consistent_headers(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _race_app(stack_urls, unique, WHALLI_RATE_LIMIT_USER_PER_MIN="10") as race:
        alice = await race.world.register("alice")
        answers = await asyncio.gather(
            *(race.client.get("/api/auth/me", headers=alice["auth"]) for _ in range(30))
        )
    _assert_exact_burst(answers, limit=10, extra=20)


async def test_a_burst_from_one_ip_passes_exactly_the_limit_with_consistent_headers(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    async with _race_app(
        stack_urls, unique, WHALLI_RATE_LIMIT_IP_PER_MIN="20",
        WHALLI_TRUSTED_PROXIES="127.0.0.1/32",
    ) as race:  # fmt: skip
        junk = {"refreshToken": "x" * 43}
        answers = await asyncio.gather(
            *(
                race.client.post("/api/auth/logout", json=junk, headers={"X-Forwarded-For": ip})
                for _ in range(35)
            )
        )
    _assert_exact_burst(answers, limit=20, extra=15, ok=204)


def _assert_exact_burst(
    answers: list[httpx.Response], *, limit: int, extra: int, ok: int = 200
) -> None:
    statuses = [a.status_code for a in answers]
    assert statuses.count(ok) == limit, statuses
    assert statuses.count(429) == extra, statuses
    passed = [a for a in answers if a.status_code == ok]
    assert sorted(int(a.headers["ratelimit-remaining"]) for a in passed) == list(range(limit))
    for answer in answers:
        assert answer.headers["ratelimit-limit"] == str(limit)
        assert 1 <= int(answer.headers["ratelimit-reset"]) <= 60
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.headers["retry-after"] == refused.headers["ratelimit-reset"]
        assert refused.headers["content-type"].startswith("application/problem+json")
