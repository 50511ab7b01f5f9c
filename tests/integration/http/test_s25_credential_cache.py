"""Hunt S25 of the principal cache (``PrincipalCache`` + credential versions), end to end with
TWO app instances on the same real Postgres and Redis: instance B remembers a credential (two or
three requests with it), the change is made through instance A's HTTP API, and the very next
request on B must see it, for both kinds of credential (access token, API key).

Each instance's cache is given a long maximum age: on this busy machine more than the default
5 s may pass between B's warm-up and its check, and an entry aging out would hide a missing
version bump; with a long age only the credential version can make B read the database again,
so every test here can fail. Each test also checks that B really remembers the credential."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from dependency_injector import providers

from tests.integration.http.test_identity_end_to_end import PASSWORD, World, _settings
from tests.support.fake_providers import API_KEY, FakeProviderServer, openai_default
from tests.support.live_server import live_server
from tests.support.oauth_server import CLIENT_ID, CLIENT_SECRET, FakeOAuthServer, GitHubAccount
from tests.support.resolve import resolved
from whalli.adapters.embedded.redis import EmbeddedRedis
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.clock import ManualClock
from whalli.container import build_container
from whalli.domain.model.users import Plan
from whalli.domain.services.auth.principal_cache import PrincipalCache
from whalli.entrypoints.http.asgi import build_app

LONG_AGE_S = 3600.0
PRO_MODEL = "openai/gpt-4o"  # above the free plan (test_a_model_above_the_callers_plan_is_refused)


@asynccontextmanager
async def _instance(
    stack_urls: StackUrls, unique: str, *, clock: ManualClock | None = None, **env: str
) -> AsyncIterator[World]:
    """One API instance (its own container: its own cache, key owners, Redis clients)."""
    # nothing outside loopback, whatever a test's outcome (a start refused or not)
    env = {"WHALLI_OPENAI_BASE_URL": "http://127.0.0.1:9", **env}
    container = build_container(_settings(stack_urls, unique, **env))
    container.services.principal_cache.override(
        providers.Singleton(PrincipalCache, max_age_s=LONG_AGE_S)
    )
    if clock is not None:
        container.adapters.clock.override(providers.Object(clock))
    async with live_server(build_app(container.settings(), container)) as client:
        yield World(client, container)  # type: ignore[arg-type]


@pytest.fixture
async def pair(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[tuple[World, World]]:
    async with (
        _instance(stack_urls, unique) as a,
        _instance(stack_urls, unique) as b,
    ):
        yield a, b


async def _cache(world: World) -> PrincipalCache:
    cache = await resolved(world.container.services.principal_cache())
    assert isinstance(cache, PrincipalCache)
    return cache


async def _warm(world: World, *headers: dict[str, str], path: str = "/api/auth/me") -> None:
    """Three requests with each credential on ``world``, which then remembers each of them."""
    for auth in headers:
        for _ in range(3):
            response = await world.client.get(path, headers=auth)
            assert response.status_code == 200, response.text
    assert len(await _cache(world)) >= len(headers)


async def _key(world: World, auth: dict[str, str], **body: Any) -> dict[str, str]:
    created = await world.client.post("/api/keys", json={"name": "k", **body}, headers=auth)
    assert created.status_code == 201, created.text
    return {"X-API-Key": created.json()["secret"], "id": created.json()["id"]}


def _key_auth(key: dict[str, str]) -> dict[str, str]:
    return {"X-API-Key": key["X-API-Key"]}


async def _login(world: World, email: str) -> dict[str, Any]:
    response = await world.client.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    tokens["auth"] = {"Authorization": f"Bearer {tokens['accessToken']}"}
    return tokens


async def _status(world: World, auth: dict[str, str], path: str = "/api/auth/me") -> int:
    return (await world.client.get(path, headers=auth)).status_code


async def _admin_patch(world: World, admin: dict[str, str], user_id: str, **body: Any) -> None:
    changed = await world.client.patch(f"/api/admin/users/{user_id}", json=body, headers=admin)
    assert changed.status_code == 200, changed.text


# --- every change through A, seen by the very next request on B ---------------------------


async def test_a_logout_on_one_instance_ends_that_sessions_access_token_on_the_other(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    alice = await a.register("alice")
    other = await _login(a, alice["email"])  # a second session, which stays
    await _warm(b, alice["auth"], other["auth"])
    out = await a.client.post(
        "/api/auth/logout", json={"refreshToken": alice["tokens"]["refreshToken"]}
    )
    assert out.status_code == 204
    assert await _status(b, alice["auth"]) == 401
    assert await _status(b, other["auth"]) == 200


async def test_logout_everywhere_on_one_instance_ends_every_session_on_the_other_not_its_keys(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    alice = await a.register("alice")
    other = await _login(a, alice["email"])
    key = await _key(a, alice["auth"])
    await _warm(b, alice["auth"], other["auth"], _key_auth(key))
    out = await a.client.post("/api/auth/logout-all", headers=alice["auth"])
    assert out.status_code == 204
    assert await _status(b, alice["auth"]) == 401
    assert await _status(b, other["auth"]) == 401
    assert await _status(b, _key_auth(key)) == 200  # a key is no login session


async def test_a_password_change_on_one_instance_ends_the_other_sessions_on_the_other_at_once(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    alice = await a.register("alice")
    other = await _login(a, alice["email"])
    await _warm(b, alice["auth"], other["auth"])
    changed = await a.client.post(
        "/api/auth/password",
        json={"currentPassword": PASSWORD, "newPassword": "a much newer horse staple 42"},
        headers=alice["auth"],
    )
    assert changed.status_code == 200, changed.text
    assert await _status(b, other["auth"]) == 401
    assert await _status(b, alice["auth"]) == 401
    fresh = {"Authorization": f"Bearer {changed.json()['accessToken']}"}
    assert await _status(b, fresh) == 200


async def test_a_key_revoked_on_one_instance_is_refused_by_the_other_at_once(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    alice = await a.register("alice")
    revoked, kept = await _key(a, alice["auth"]), await _key(a, alice["auth"])
    await _warm(b, _key_auth(revoked), _key_auth(kept), alice["auth"])
    gone = await a.client.delete(f"/api/keys/{revoked['id']}", headers=alice["auth"])
    assert gone.status_code == 204
    assert await _status(b, _key_auth(revoked)) == 401
    assert await _status(b, _key_auth(revoked), "/v1/models") == 401
    assert await _status(b, _key_auth(kept)) == 200
    assert await _status(b, alice["auth"]) == 200


async def test_an_account_disabled_by_an_admin_is_refused_by_the_other_instance_at_once(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    admin = await a.create_admin()
    bob = await a.register("bob")
    key = await _key(a, bob["auth"])
    await _warm(b, bob["auth"], _key_auth(key))
    await _admin_patch(a, admin, bob["user"]["id"], disabled=True)
    assert await _status(b, bob["auth"]) == 401
    assert await _status(b, _key_auth(key)) == 401


async def test_an_account_re_enabled_by_an_admin_signs_in_again_on_the_other_instance(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    admin = await a.create_admin()
    bob = await a.register("bob")
    await _warm(b, bob["auth"])
    await _admin_patch(a, admin, bob["user"]["id"], disabled=True)
    assert await _status(b, bob["auth"]) == 401
    await _admin_patch(a, admin, bob["user"]["id"], disabled=False)
    assert await _status(b, bob["auth"]) == 401  # its sessions were ended by the disabling
    again = await _login(a, bob["email"])
    assert await _status(b, again["auth"]) == 200


async def test_an_admin_demoted_on_one_instance_loses_the_admin_routes_on_the_other_at_once(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    admin = await a.create_admin()
    second = await a.create_admin()
    me = (await a.client.get("/api/auth/me", headers=second)).json()
    await _warm(b, second, path="/api/admin/users")
    await _admin_patch(a, admin, me["id"], role="user")
    assert await _status(b, second, "/api/admin/users") == 403
    shown = await b.client.get("/api/auth/me", headers=second)
    assert shown.json()["role"] == "user"


async def test_a_plan_downgrade_refuses_a_model_above_the_new_plan_on_the_other_instance_at_once(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    admin = await a.create_admin()
    bob = await a.register("bob")
    key = await _key(a, bob["auth"])
    await _admin_patch(a, admin, bob["user"]["id"], plan=Plan.PRO.value)
    await _warm(b, bob["auth"], _key_auth(key), path="/api/models")
    for auth in (bob["auth"], _key_auth(key)):
        models = (await b.client.get("/api/models", headers=auth)).json()
        assert PRO_MODEL in {m["id"] for m in models}
    await _admin_patch(a, admin, bob["user"]["id"], plan=Plan.FREE.value)
    for auth in (bob["auth"], _key_auth(key)):
        refused = await b.client.post(
            "/api/chat/start", json={"model": PRO_MODEL, "message": "hi"}, headers=auth
        )
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "model_not_in_plan"
    listed = (await b.client.get("/v1/models", headers=_key_auth(key))).json()
    assert PRO_MODEL not in {m["id"] for m in listed["data"]}


async def test_a_deleted_accounts_key_and_token_are_refused_by_the_other_instance_at_once(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    alice = await a.register("alice")
    key = await _key(a, alice["auth"])
    await _warm(b, alice["auth"], _key_auth(key))
    deleted = await a.client.request(
        "DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=alice["auth"]
    )
    assert deleted.status_code in (200, 204), deleted.text
    assert await _status(b, _key_auth(key)) == 401
    assert await _status(b, _key_auth(key), "/v1/models") == 401
    assert await _status(b, alice["auth"]) == 401


async def test_a_rename_and_new_custom_instructions_show_on_the_other_instance_at_once(
    pair: tuple[World, World],
) -> None:
    a, b = pair
    alice = await a.register("alice")
    key = await _key(a, alice["auth"])
    await _warm(b, alice["auth"], _key_auth(key))
    changed = await a.client.patch(
        "/api/auth/me",
        json={"name": "Alice Renamed", "customInstructions": "Answer in haiku."},
        headers=alice["auth"],
    )
    assert changed.status_code == 200, changed.text
    for auth in (alice["auth"], _key_auth(key)):
        me = (await b.client.get("/api/auth/me", headers=auth)).json()
        assert (me["name"], me["customInstructions"]) == ("Alice Renamed", "Answer in haiku.")
    cleared = await a.client.patch(
        "/api/auth/me", json={"customInstructions": None}, headers=alice["auth"]
    )
    assert cleared.status_code == 200
    me = (await b.client.get("/api/auth/me", headers=alice["auth"])).json()
    assert me["customInstructions"] is None


async def test_a_reused_refresh_token_ends_its_session_on_the_other_instance_at_once(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    strict = {"WHALLI_REFRESH_TOKEN_REUSE_GRACE_S": "0"}
    async with (
        _instance(stack_urls, unique, **strict) as a,
        _instance(stack_urls, unique, **strict) as b,
    ):
        alice = await a.register("alice")
        spent = alice["tokens"]["refreshToken"]
        refreshed = await a.client.post("/api/auth/refresh", json={"refreshToken": spent})
        assert refreshed.status_code == 200
        current = {"Authorization": f"Bearer {refreshed.json()['accessToken']}"}
        await _warm(b, current)
        reused = await a.client.post("/api/auth/refresh", json={"refreshToken": spent})
        assert reused.status_code == 401
        assert await _status(b, current) == 401


async def test_a_change_made_on_the_same_instance_applies_to_its_own_next_request(
    pair: tuple[World, World],
) -> None:
    _, b = pair
    alice = await b.register("alice")
    key = await _key(b, alice["auth"])
    await _warm(b, alice["auth"], _key_auth(key))
    renamed = await b.client.patch("/api/auth/me", json={"name": "Own"}, headers=_key_auth(key))
    assert renamed.status_code == 200
    assert (await b.client.get("/api/auth/me", headers=alice["auth"])).json()["name"] == "Own"
    gone = await b.client.delete(f"/api/keys/{key['id']}", headers=alice["auth"])
    assert gone.status_code == 204
    assert await _status(b, _key_auth(key)) == 401


async def test_an_email_verified_by_an_oauth_link_on_one_instance_shows_on_the_other_at_once(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    server = FakeOAuthServer().start()
    try:
        url = server.url
        github = {
            "WHALLI_GITHUB_CLIENT_ID": CLIENT_ID,
            "WHALLI_GITHUB_CLIENT_SECRET": CLIENT_SECRET,
            "WHALLI_GITHUB_AUTHORIZE_URL": f"{url}/login/oauth/authorize",
            "WHALLI_GITHUB_TOKEN_URL": f"{url}/login/oauth/access_token",
            "WHALLI_GITHUB_API_URL": url,
        }
        async with (
            _instance(stack_urls, unique, **github) as a,
            _instance(stack_urls, unique, **github) as b,
        ):
            alice = await a.register("alice")
            key = await _key(a, alice["auth"])
            await _warm(b, alice["auth"], _key_auth(key))
            assert (await b.client.get("/api/auth/me", headers=alice["auth"])).json()[
                "emailVerified"
            ] is False
            server.github_account = GitHubAccount(
                id=uuid.uuid4().int % 10**12, login="alice", emails=[(alice["email"], True, True)]
            )
            started = await a.client.post("/api/auth/oauth/github/link", headers=alice["auth"])
            assert started.status_code == 200, started.text
            found = re.search(r"whalli_oauth=([^;]+)", started.headers["set-cookie"])
            assert found is not None
            async with httpx.AsyncClient() as browser:
                consent = await browser.get(started.json()["authorizationUrl"])
            assert consent.status_code == 302, consent.text
            back = urlsplit(consent.headers["location"])
            linked = await a.client.get(
                f"{back.path}?{back.query}&format=json",
                headers={"Cookie": f"whalli_oauth={found[1]}"},
            )
            assert linked.status_code == 200, linked.text
            for auth in (alice["auth"], _key_auth(key)):
                me = (await b.client.get("/api/auth/me", headers=auth)).json()
                assert me["emailVerified"] is True
    finally:
        server.stop()


async def test_a_key_revoked_on_one_instance_cannot_open_a_reply_stream_on_the_other(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with FakeProviderServer(openai_default()) as provider:
        env = {
            "WHALLI_OPENAI_API_KEY": API_KEY,
            "WHALLI_OPENAI_BASE_URL": provider.url,
            "WHALLI_CHAT_TITLES": "off",
        }
        async with (
            _instance(stack_urls, unique, **env) as a,
            _instance(stack_urls, unique, **env) as b,
        ):
            alice = await a.register("alice")
            key = await _key(a, alice["auth"])
            started = await a.client.post(
                "/api/chat/start",
                json={"model": "openai/gpt-4o-mini", "message": f"hi {uuid.uuid4()}"},
                headers=_key_auth(key),
            )
            assert started.status_code == 201, started.text
            url = f"/api/chat/stream?sessionId={started.json()['sessionId']}"
            async with a.client.stream("GET", url, headers=_key_auth(key)) as read:
                assert read.status_code == 200
                events = [line async for line in read.aiter_lines() if line.startswith("event:")]
            assert "event: done" in events
            await _warm(b, _key_auth(key))
            gone = await a.client.delete(f"/api/keys/{key['id']}", headers=alice["auth"])
            assert gone.status_code == 204
            async with b.client.stream("GET", url, headers=_key_auth(key)) as stream:
                assert stream.status_code in (401, 404), stream.status_code


# --- what time alone ends, on what is remembered ------------------------------------------


async def test_a_remembered_key_is_refused_once_its_expiry_passes(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    clock = ManualClock(datetime.now(UTC))
    async with (
        _instance(stack_urls, unique, clock=clock) as a,
        _instance(stack_urls, unique, clock=clock) as b,
    ):
        alice = await a.register("alice")
        expires = (clock.now() + timedelta(minutes=10)).isoformat()
        key = await _key(a, alice["auth"], expiresAt=expires)
        await _warm(b, _key_auth(key))
        clock.advance(9 * 60)
        assert await _status(b, _key_auth(key)) == 200
        clock.advance(2 * 60)
        assert await _status(b, _key_auth(key)) == 401
        assert await _status(b, _key_auth(key), "/v1/models") == 401


async def test_a_remembered_session_is_refused_once_it_runs_out_though_its_token_has_not(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    clock = ManualClock(datetime.now(UTC))
    env = {"WHALLI_REFRESH_TOKEN_TTL_DAYS": "1", "WHALLI_ACCESS_TOKEN_TTL_S": "3600"}
    async with (
        _instance(stack_urls, unique, clock=clock, **env) as a,
        _instance(stack_urls, unique, clock=clock, **env) as b,
    ):
        alice = await a.register("alice")
        clock.advance(24 * 3600 - 20 * 60)  # 20 minutes before the session's end
        refreshed = await a.client.post(
            "/api/auth/refresh", json={"refreshToken": alice["tokens"]["refreshToken"]}
        )
        assert refreshed.status_code == 200  # its successor keeps the family's end
        late = {"Authorization": f"Bearer {refreshed.json()['accessToken']}"}  # valid 1 h
        await _warm(b, late)
        clock.advance(19 * 60)
        assert await _status(b, late) == 200
        clock.advance(2 * 60)  # the session ended; the access token has 40 minutes left
        assert await _status(b, late) == 401


# --- Redis trouble: nothing stale may be trusted -------------------------------------------


class CuttableRelay:
    """A loopback TCP relay to a server (bytes passed as they are: the real protocol), on its
    own thread and event loop (the test client may hold the test's loop while a request runs),
    which ``cut`` closes: every connection through it ends and new ones are refused."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> CuttableRelay:
        self._thread.start()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._open(), self._loop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def restore(self) -> None:
        """Listen again on the same port (the network is back; the server kept its data)."""
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._open(), self._loop))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def cut(self) -> None:
        if self._loop.is_running():
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._cut(), self._loop))


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(
        parts._replace(netloc=f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}")
    )


async def test_an_instance_cut_off_from_redis_reads_the_database_rather_than_its_memory(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    target = urlsplit(stack_urls.redis_url)
    async with CuttableRelay(target.hostname or "127.0.0.1", target.port or 6379) as relay:
        redis_b = _through(stack_urls.redis_url, relay.port)
        async with (
            _instance(stack_urls, unique) as a,
            _instance(stack_urls, unique, WHALLI_REDIS_URL=redis_b) as b,
        ):
            alice = await a.register("alice")
            key = await _key(a, alice["auth"])
            await _warm(b, alice["auth"], _key_auth(key))
            assert (
                await a.client.delete(f"/api/keys/{key['id']}", headers=alice["auth"])
            ).status_code == 204
            out = await a.client.post(
                "/api/auth/logout", json={"refreshToken": alice["tokens"]["refreshToken"]}
            )
            assert out.status_code == 204
            await relay.cut()
            for _ in range(2):
                assert await _status(b, _key_auth(key)) in (401, 503)
                assert await _status(b, alice["auth"]) in (401, 503)


async def test_a_key_revoked_while_its_instance_cannot_reach_redis_is_refused_by_the_others(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    target = urlsplit(stack_urls.redis_url)
    async with CuttableRelay(target.hostname or "127.0.0.1", target.port or 6379) as relay:
        redis_a = _through(stack_urls.redis_url, relay.port)
        async with (
            _instance(stack_urls, unique, WHALLI_REDIS_URL=redis_a) as a,
            _instance(stack_urls, unique) as b,
        ):
            alice = await a.register("alice")
            key = await _key(a, alice["auth"])
            await _warm(b, _key_auth(key))
            await relay.cut()  # A's Redis blips; B's is fine (rate limits fail open on A)
            gone = await a.client.delete(f"/api/keys/{key['id']}", headers=alice["auth"])
            assert gone.status_code in (204, 503), gone.text
            listed = (await b.client.get("/api/keys", headers=alice["auth"])).json()
            revoked = {k["id"]: k["revokedAt"] for k in listed}[key["id"]] is not None
            if revoked:  # committed: it must apply to the very next request everywhere
                assert await _status(b, _key_auth(key)) == 401
            else:  # refused: nothing may have changed
                assert gone.status_code == 503


async def test_a_redis_restart_does_not_make_a_principal_remembered_before_a_change_trusted(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    own = EmbeddedRedis(tmp_path, fast=True)  # no persistence: a restart forgets everything
    state = own.start(None)
    try:
        async with (
            _instance(stack_urls, unique, WHALLI_REDIS_URL=state["url"]) as a,
            _instance(stack_urls, unique, WHALLI_REDIS_URL=state["url"]) as b,
        ):
            admin = await a.create_admin()
            bob = await a.register("bob")
            key = await _key(a, bob["auth"])
            await _warm(b, bob["auth"], _key_auth(key))
            await _admin_patch(a, admin, bob["user"]["id"], disabled=True)
            own.stop(state)
            state = own.start(state)  # same port and password, its data gone
            answers = []
            for _ in range(3):  # the first may meet B's broken connection
                answers.append(await _status(b, _key_auth(key)))
                answers.append(await _status(b, bob["auth"]))
            assert answers == [401] * 6
    finally:
        own.stop(state)


async def test_a_restriction_asked_for_during_a_redis_outage_is_refused_then_applies_after(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """With the versions out of reach, a change that restricts an account is refused (503,
    nothing saved) rather than committed unseen; once Redis is back it applies at once on B,
    which forgot what it remembered when it could not read the versions."""
    target = urlsplit(stack_urls.redis_url)
    async with CuttableRelay(target.hostname or "127.0.0.1", target.port or 6379) as relay:
        redis = _through(stack_urls.redis_url, relay.port)
        async with (
            _instance(stack_urls, unique, WHALLI_REDIS_URL=redis) as a,
            _instance(stack_urls, unique, WHALLI_REDIS_URL=redis) as b,
        ):
            admin = await a.create_admin()
            bob = await a.register("bob")
            key = await _key(a, bob["auth"])
            await _warm(b, bob["auth"], _key_auth(key))
            await relay.cut()  # Redis unreachable for everyone (rate limits fail open)
            path = f"/api/admin/users/{bob['user']['id']}"
            refused = await a.client.patch(path, json={"disabled": True}, headers=admin)
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "service_unavailable"
            assert await _status(b, _key_auth(key)) == 200  # nothing saved; B reads the database
            assert await _status(b, bob["auth"]) == 200
            await relay.restore()  # the network heals; Redis never lost its data
            await _admin_patch(a, admin, bob["user"]["id"], disabled=True)
            answers = []
            for _ in range(3):
                answers.append(await _status(b, _key_auth(key)))
                answers.append(await _status(b, bob["auth"]))
            assert answers == [401] * 6
