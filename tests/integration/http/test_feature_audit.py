"""An audit (a helper's bug hunt) of the refresh grace window, chat system prompts, the usage
summary and the stream route served below Litestar, on the real app (uvicorn, Postgres, Redis,
a fake provider). Each test asserts the correct behaviour. Four findings failed here before
their fixes: a logout racing a refresh left a token live (with and without the grace window),
usage dates at the calendar's edges were a 500, and two PATCHes of a chat at once lost one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from litestar import Litestar

from tests.integration.http.test_auth_races import Race, _lock_token, _race_app
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import World, _settings
from tests.support.fake_providers import API_KEY, FakeProviderServer, openai_default
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.clock import ManualClock
from whalli.container import build_container
from whalli.entrypoints.http.asgi import build_app
from whalli.entrypoints.http.cors import CorsMiddleware
from whalli.entrypoints.http.middleware import RequestContextMiddleware
from whalli.entrypoints.http.stream_route import STREAM_PATH, StreamRoute
from whalli.ports.usage import UsageRecord

MODEL = "openai/gpt-4o-mini"


# --- helpers ------------------------------------------------------------------------------------
class Audit(Chat):
    """The chat world, holding its Litestar app, so the stream route can be switched off."""

    def __init__(self, world: World, provider: FakeProviderServer, app: Litestar) -> None:
        super().__init__(world, provider)
        self.app = app
        outer = app.asgi_handler
        assert isinstance(outer, RequestContextMiddleware)
        assert isinstance(outer.app, CorsMiddleware)  # (CORS around the stream route too)
        assert isinstance(outer.app.app, StreamRoute)
        self._outer, self._fast = outer.app, outer.app.app

    @asynccontextmanager
    async def litestar_only(self) -> AsyncIterator[None]:
        """Requests in this block reach Litestar's own route (what the fast path must match)."""
        self._outer.app = self._fast.app
        try:
            yield
        finally:
            self._outer.app = self._fast

    async def finished_session(self, auth: dict[str, str]) -> str:
        started = await self.start(auth, model=MODEL, message=f"hello {uuid.uuid4()}")
        events = await self.events(started["sessionId"])
        assert events[-1][1] == "done"
        return str(started["sessionId"])


@pytest.fixture
async def audit(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Audit]:
    async with FakeProviderServer(openai_default()) as provider:
        settings = _settings(
            stack_urls, unique, WHALLI_OPENAI_API_KEY=API_KEY,
            WHALLI_OPENAI_BASE_URL=provider.url, WHALLI_PROVIDER_MAX_ATTEMPTS="2",
        )  # fmt: skip
        container = build_container(settings)
        app = build_app(settings, container)
        async with live_server(app) as client:
            yield Audit(World(client, container), provider, app)  # type: ignore[arg-type]


@pytest.fixture
async def race(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[Race]:
    async with _race_app(stack_urls, unique) as race:
        yield race


@pytest.fixture
async def clocked(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[tuple[Race, ManualClock]]:
    clock = ManualClock()
    async with _race_app(stack_urls, unique, clock) as race:
        yield race, clock


async def _team(audit: Audit, owner: dict[str, Any], member: dict[str, Any], role: str) -> str:
    created = await audit.client.post("/api/projects", json={"name": "Team"}, headers=owner["auth"])
    assert created.status_code == 201, created.text
    project_id: str = created.json()["id"]
    added = await audit.client.post(
        f"/api/projects/{project_id}/members",
        json={"email": member["email"], "role": role}, headers=owner["auth"],
    )  # fmt: skip
    assert added.status_code == 201, added.text
    return project_id


def _not_500(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)


async def _live_family(race: Race, token: str) -> list[tuple[Any, ...]]:
    return [row for row in await race.family_rows(token) if row[3] is None]


# --- 1. refresh grace window --------------------------------------------------------------------
async def test_logout_racing_a_second_tabs_refresh_inside_the_window_leaves_no_live_session(
    race: Race,
) -> None:
    """Tab A refreshed token T (successor S). Tab B presents T again (within the grace window)
    while the user logs out with S. Logout answered 204: nothing of the family may stay live,
    in particular not the sibling T' that tab B's refresh inserts while logout revokes."""
    alice = await race.world.register("alice")
    token = alice["tokens"]["refreshToken"]
    first = await race.refresh(token)
    assert first.status_code == 200, first.text
    successor = first.json()["refreshToken"]
    async with race.held(*_lock_token(token)):
        tab_b = await race.started(race.refresh(token), "refresh_tokens", 1)
        # logout holds the account first (as a refresh does): it waits on the users table
        logout = await race.started(
            race.client.post("/api/auth/logout", json={"refreshToken": successor}), "users", 1
        )
    refreshed, out = await tab_b, await logout
    assert out.status_code == 204
    if refreshed.status_code == 200:
        pair = refreshed.json()
        assert (await race.me(pair["accessToken"])).status_code == 401
        assert (await race.refresh(pair["refreshToken"])).status_code == 401
    assert (await race.me(first.json()["accessToken"])).status_code == 401
    assert await _live_family(race, token) == []


async def test_logout_with_a_spent_token_racing_a_refresh_of_its_successor_leaves_no_live_session(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """The same race without the grace window: logout presents the spent token T while the
    successor S is being rotated. Logout answered 204, so S's successor must not be live."""
    async with _race_app(stack_urls, unique, WHALLI_REFRESH_TOKEN_REUSE_GRACE_S="0") as race:
        alice = await race.world.register("alice")
        token = alice["tokens"]["refreshToken"]
        first = await race.refresh(token)
        assert first.status_code == 200, first.text
        successor = first.json()["refreshToken"]
        async with race.held(*_lock_token(successor)):
            rotating = await race.started(race.refresh(successor), "refresh_tokens", 1)
            logout = await race.started(
                race.client.post("/api/auth/logout", json={"refreshToken": token}), "users", 1
            )
        refreshed, out = await rotating, await logout
        assert out.status_code == 204
        if refreshed.status_code == 200:
            pair = refreshed.json()
            assert (await race.me(pair["accessToken"])).status_code == 401
            assert (await race.refresh(pair["refreshToken"])).status_code == 401
        assert await _live_family(race, token) == []


async def test_a_spent_token_presented_inside_the_window_after_logout_is_refused(
    race: Race,
) -> None:
    alice = await race.world.register("alice")
    token = alice["tokens"]["refreshToken"]
    first = await race.refresh(token)
    out = await race.client.post(
        "/api/auth/logout", json={"refreshToken": first.json()["refreshToken"]}
    )
    assert out.status_code == 204
    again = await race.refresh(token)
    assert again.status_code == 401, again.text
    assert await _live_family(race, token) == []


async def test_a_spent_token_presented_inside_the_window_after_a_password_change_is_refused(
    race: Race,
) -> None:
    alice = await race.world.register("alice")
    token = alice["tokens"]["refreshToken"]
    first = await race.refresh(token)
    auth = {"Authorization": f"Bearer {first.json()['accessToken']}"}
    changed = await race.client.post(
        "/api/auth/password", headers=auth,
        json={"currentPassword": "correct horse battery staple",
              "newPassword": "a brand new passphrase for whalli"},
    )  # fmt: skip
    assert changed.status_code in (200, 204), changed.text
    again = await race.refresh(token)
    assert again.status_code == 401, again.text
    rows = await race.family_rows(token)
    assert all(revoked is not None for *_, revoked in rows)


async def test_two_replays_together_after_the_window_both_fail_and_revoke_everything(
    clocked: tuple[Race, ManualClock],
) -> None:
    race, clock = clocked
    alice = await race.world.register("alice")
    token = alice["tokens"]["refreshToken"]
    first = await race.refresh(token)
    assert first.status_code == 200
    clock.advance(11)
    async with race.held(*_lock_token(token)):
        a = await race.started(race.refresh(token), "refresh_tokens", 1)
        b = await race.started(race.refresh(token), "refresh_tokens", 2)
    ra, rb = await a, await b
    assert (ra.status_code, rb.status_code) == (401, 401), (ra.text, rb.text)
    assert await _live_family(race, token) == []
    assert (await race.me(first.json()["accessToken"])).status_code == 401


async def test_the_window_counts_from_the_first_use_and_does_not_slide(
    clocked: tuple[Race, ManualClock],
) -> None:
    race, clock = clocked
    alice = await race.world.register("alice")
    token = alice["tokens"]["refreshToken"]
    assert (await race.refresh(token)).status_code == 200
    clock.advance(6)
    assert (await race.refresh(token)).status_code == 200
    clock.advance(6)  # 12 s after the first use, 6 after the second
    late = await race.refresh(token)
    assert late.status_code == 401, late.text
    assert await _live_family(race, token) == []


# --- 2. system prompts --------------------------------------------------------------------------
async def test_a_viewer_cannot_set_or_clear_a_system_prompt_and_a_stranger_learns_nothing(
    audit: Audit,
) -> None:
    alice, vic, eve = [await audit.world.register(n) for n in ("alice", "vic", "eve")]
    project_id = await _team(audit, alice, vic, "viewer")
    started = await audit.start(
        alice["auth"], model=MODEL, message=f"q {uuid.uuid4()}", projectId=project_id,
        systemPrompt="Be kind.",
    )  # fmt: skip
    await audit.events(started["sessionId"])
    url = f"/api/chats/{started['chatId']}"
    for body in ({"systemPrompt": "Be evil."}, {"systemPrompt": None}, {"systemPrompt": "  "}, {}):
        as_viewer = await audit.client.patch(url, json=body, headers=vic["auth"])
        assert as_viewer.status_code == 403, (body, as_viewer.text)
        assert "Be kind" not in as_viewer.text
        as_stranger = await audit.client.patch(url, json=body, headers=eve["auth"])
        assert as_stranger.status_code == 404, (body, as_stranger.text)
        assert "Be kind" not in as_stranger.text
    shown = await audit.client.get(url, headers=vic["auth"])
    assert shown.json()["systemPrompt"] == "Be kind."
    assert (await audit.client.get(url, headers=eve["auth"])).status_code == 404
    # a viewer cannot slip one in through the start either
    sneaky = await audit.client.post(
        "/api/chat/start", headers=vic["auth"],
        json={"model": MODEL, "message": "x", "chatId": started["chatId"], "systemPrompt": "Evil"},
    )  # fmt: skip
    assert sneaky.status_code in (403, 422), sneaky.text
    assert (await audit.client.get(url, headers=alice["auth"])).json()["systemPrompt"] == "Be kind."


@pytest.mark.parametrize(
    "system_prompt",
    ["nul \u0000 inside", "\u0000", "x" * 20_001, 42, ["a"], {"a": 1}],
    ids=["NUL inside", "only NUL", "one too long", "a number", "a list", "an object"],
)
async def test_an_odd_system_prompt_at_the_start_is_a_clear_4xx_and_leaves_nothing(
    audit: Audit, system_prompt: Any
) -> None:
    alice = await audit.world.register("alice")
    response = await audit.client.post(
        "/api/chat/start", headers=alice["auth"],
        json={"model": MODEL, "message": f"hi {uuid.uuid4()}", "systemPrompt": system_prompt},
    )  # fmt: skip
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    chats = (await audit.client.get("/api/chats", headers=alice["auth"])).json()["items"]
    assert chats == []


async def test_a_lone_surrogate_system_prompt_is_a_clear_4xx(audit: Audit) -> None:
    alice = await audit.world.register("alice")
    raw = b'{"model": "%s", "message": "hi", "systemPrompt": "a\\ud800b"}' % MODEL.encode()
    headers = {**alice["auth"], "Content-Type": "application/json"}
    response = await audit.client.post("/api/chat/start", content=raw, headers=headers)
    assert response.status_code in (400, 422), response.text
    started = await audit.start(alice["auth"], model=MODEL, message=f"ok {uuid.uuid4()}")
    url = f"/api/chats/{started['chatId']}"
    patched = await audit.client.patch(url, content=b'{"systemPrompt": "\\udfff"}', headers=headers)
    assert patched.status_code in (400, 422), patched.text


@pytest.mark.parametrize(
    "system_prompt",
    ["nul \u0000 inside", "x" * 20_001, 7],
    ids=["NUL inside", "one too long", "a number"],
)
async def test_an_odd_system_prompt_by_patch_is_a_clear_4xx_and_keeps_the_old_one(
    audit: Audit, system_prompt: Any
) -> None:
    alice = await audit.world.register("alice")
    started = await audit.start(
        alice["auth"], model=MODEL, message=f"hi {uuid.uuid4()}", systemPrompt="Old."
    )
    await audit.events(started["sessionId"])
    url = f"/api/chats/{started['chatId']}"
    response = await audit.client.patch(
        url, json={"systemPrompt": system_prompt}, headers=alice["auth"]
    )
    assert response.status_code in (400, 422), response.text
    assert (await audit.client.get(url, headers=alice["auth"])).json()["systemPrompt"] == "Old."


async def test_the_longest_system_prompt_is_kept_whole_and_sent_first(audit: Audit) -> None:
    alice = await audit.world.register("alice")
    longest = "é" * 19_999 + "\U0001f600"  # 20 000 characters, not bytes
    started = await audit.start(
        alice["auth"], model=MODEL, message=f"hi {uuid.uuid4()}", systemPrompt=longest
    )
    await audit.events(started["sessionId"])
    assert audit.provider.requests[-1].body["messages"][0] == {"role": "system", "content": longest}
    shown = await audit.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    assert shown.json()["systemPrompt"] == longest


async def test_a_system_prompt_patched_with_a_title_changes_both_or_neither(audit: Audit) -> None:
    alice = await audit.world.register("alice")
    started = await audit.start(
        alice["auth"], model=MODEL, message=f"hi {uuid.uuid4()}", systemPrompt="Old."
    )
    url = f"/api/chats/{started['chatId']}"
    bad = await audit.client.patch(
        url, json={"title": "New title", "systemPrompt": "x" * 20_001}, headers=alice["auth"]
    )
    assert bad.status_code == 422, bad.text
    shown = (await audit.client.get(url, headers=alice["auth"])).json()
    assert shown["systemPrompt"] == "Old."
    assert shown["title"] != "New title"


# --- 3. usage -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "to=9999-12-31",
        "from=9999-12-31&to=9999-12-31",
        "from=9999-12-01",
        "to=0001-01-01",
        "to=0001-01-10",
        "from=0001-01-01&to=0001-01-01",
        "from=0001-01-01&to=0001-12-31",
        "from=0001-01-01",
    ],
)
async def test_usage_at_the_edges_of_the_calendar_is_never_a_500(audit: Audit, query: str) -> None:
    alice = await audit.world.register("alice")
    response = await audit.client.get(f"/api/usage?{query}", headers=alice["auth"])
    _not_500(response)
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code == 200:
        body = response.json()
        assert body["total"]["requests"] == 0
        assert len(body["byDay"]) >= 1


async def test_usage_edges_on_the_admin_route_are_never_a_500(audit: Audit) -> None:
    alice = await audit.world.register("alice")
    admin = await audit.world.create_admin()
    url = f"/api/admin/users/{alice['user']['id']}/usage?to=9999-12-31"
    _not_500(await audit.client.get(url, headers=admin))


async def test_usage_over_a_range_crossing_new_year_lists_every_day(audit: Audit) -> None:
    alice = await audit.world.register("alice")
    response = await audit.client.get(
        "/api/usage?from=2025-12-20&to=2026-01-10", headers=alice["auth"]
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"]) == ("2025-12-20", "2026-01-10")
    days = [d["day"] for d in body["byDay"]]
    assert len(days) == 22
    assert days[11:13] == ["2025-12-31", "2026-01-01"]
    leap = await audit.client.get("/api/usage?from=2024-01-01&to=2024-12-31", headers=alice["auth"])
    assert leap.status_code == 200
    assert len(leap.json()["byDay"]) == 366
    over = await audit.client.get("/api/usage?from=2023-01-01&to=2024-01-02", headers=alice["auth"])
    assert over.status_code == 422, over.text
    bad = await audit.client.get("/api/usage?from=2026-02-30", headers=alice["auth"])
    assert bad.status_code == 400, bad.text
    backwards = await audit.client.get(
        "/api/usage?from=2026-01-02&to=2026-01-01", headers=alice["auth"]
    )
    assert backwards.status_code == 422, backwards.text


async def test_only_admins_read_another_accounts_usage(audit: Audit) -> None:
    alice, bob = await audit.world.register("alice"), await audit.world.register("bob")
    started = await audit.start(alice["auth"], model=MODEL, message=f"spend {uuid.uuid4()}")
    await audit.events(started["sessionId"])
    url = f"/api/admin/users/{alice['user']['id']}/usage"
    as_bob = await audit.client.get(url, headers=bob["auth"])
    assert as_bob.status_code == 403, as_bob.text
    assert "requests" not in as_bob.text
    unknown = await audit.client.get(f"/api/admin/users/{uuid.uuid4()}/usage", headers=bob["auth"])
    assert unknown.status_code == 403, unknown.text  # a non-admin learns nothing of existence
    # the caller's own route never takes another id
    own = await audit.client.get(
        f"/api/usage?user_id={alice['user']['id']}&userId={alice['user']['id']}",
        headers=bob["auth"],
    )
    assert own.status_code in (200, 400), own.text
    if own.status_code == 200:
        assert own.json()["total"]["requests"] == 0
    assert (await audit.client.get(url)).status_code == 401
    admin = await audit.world.create_admin()
    as_admin = await audit.client.get(url, headers=admin)
    assert as_admin.status_code == 200, as_admin.text
    assert as_admin.json()["total"]["requests"] == 1
    missing = await audit.client.get(f"/api/admin/users/{uuid.uuid4()}/usage", headers=admin)
    assert missing.status_code == 404, missing.text


# --- 5. the stream route below Litestar ---------------------------------------------------------
def _comparable(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    return [
        (k.lower(), v) for k, v in response.headers.raw
        if k.lower() not in (b"date", b"x-request-id")
    ]  # fmt: skip


async def _read(
    client: httpx.AsyncClient, method: str, query: str, headers: list[tuple[str, str]]
) -> tuple[httpx.Response, bytes]:
    url = f"{STREAM_PATH}?{query}" if query else STREAM_PATH
    request = client.build_request(method, url, headers=headers)  # duplicates kept, as sent
    response = await client.send(request, stream=True)
    try:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return response, body.replace(response.headers.get("x-request-id", "").encode() or b"\0", b"")


async def test_the_fast_stream_path_answers_odd_requests_exactly_as_the_litestar_route(
    audit: Audit,
) -> None:
    alice, eve = await audit.world.register("alice"), await audit.world.register("eve")
    session = await audit.finished_session(alice["auth"])
    a_token = alice["tokens"]["accessToken"]
    cases: list[tuple[str, str, list[tuple[str, str]]]] = [
        ("GET", f"sessionId={session}", []),
        ("GET", f"session%49d={session}", []),
        ("GET", f"sessionId={session}&sessionid=other", []),
        ("GET", f"sessionId={session}&sessionId={session}", []),
        ("GET", f"sessionId={session}&sessionId=", []),
        ("GET", f"sessionId={session}%00", []),
        ("GET", "sessionId=%ED%A0%80", []),
        ("GET", "sessionId=%FF%FE", []),
        ("GET", "sessionId=" + "%C3%A9" * 200, []),
        ("GET", f"sessionId={session}&lastEventId=%00", []),
        ("GET", f"sessionId={session}&lastEventId=%ED%A0%80", []),
        ("GET", f"sessionId={session}", [("authorization", f"bearer {a_token}")]),
        ("GET", f"sessionId={session}", [("AUTHORIZATION", f"Bearer {a_token}")]),
        ("GET", f"sessionId={session}", [("Authorization", f"Bearer {a_token}")] * 2),
        (
            "GET",
            f"sessionId={session}",
            [("Authorization", f"Bearer {a_token}"), ("Authorization", "Bearer junk")],
        ),
        (
            "GET",
            f"sessionId={session}",
            [("Authorization", f"Bearer {a_token}"), ("X-API-Key", "whk_junk")],
        ),
        ("GET", f"sessionId={session}", [("Authorization", "Bearer")]),
        ("GET", f"sessionId={session}", [("Authorization", "")]),
        ("GET", f"sessionId={session}", [("X-API-Key", "")]),
        (
            "GET",
            f"sessionId={session}",
            [("Authorization", f"Bearer {eve['tokens']['accessToken']}")],
        ),
        ("GET", f"sessionId={session}", [("Last-Event-ID", ""), ("Last-Event-ID", "junk")]),
        ("GET", f"sessionId={session}", [("Last-Event-ID", "junk"), ("Last-Event-ID", "")]),
        ("GET", f"sessionId={session}", [("Last-Event-ID", b"\xc3\xa9")]),  # type: ignore[list-item]
        ("HEAD", f"sessionId={session}", []),
        ("GET", "", []),
    ]
    for method, query, headers in cases:
        fast, fast_body = await _read(audit.client, method, query, headers)
        async with audit.litestar_only():
            slow, slow_body = await _read(audit.client, method, query, headers)
        case = (method, query[:60], headers)
        assert fast.status_code == slow.status_code, (case, fast.status_code, slow.status_code)
        assert fast.status_code < 500, (case, fast_body[:300])
        assert _comparable(fast) == _comparable(slow), case
        assert fast_body == slow_body, (case, fast_body[:300], slow_body[:300])
        assert fast.headers.get("x-request-id"), case


async def test_a_stranger_cannot_attach_through_the_fast_path_with_odd_credentials(
    audit: Audit,
) -> None:
    alice, eve = await audit.world.register("alice"), await audit.world.register("eve")
    session = await audit.finished_session(alice["auth"])
    eve_token = eve["tokens"]["accessToken"]
    for headers in (
        [("Authorization", f"Bearer {eve_token}")],
        [("Authorization", f"bEaReR   {eve_token}")],
        [("X-API-Key", eve_token)],
        [("x-api-key", eve_token), ("Authorization", "")],
    ):
        answer, body = await _read(audit.client, "GET", f"sessionId={session}", headers)
        assert answer.status_code in (401, 404), (headers, answer.status_code)
        assert b"event: token" not in body


async def test_the_fast_path_is_counted_under_the_stream_route_in_metrics(audit: Audit) -> None:
    alice = await audit.world.register("alice")
    session = await audit.finished_session(alice["auth"])
    before = (await audit.client.get("/api/metrics")).text
    answer, _ = await _read(audit.client, "GET", f"sessionId={session}", [])
    assert answer.status_code == 200
    missing, _ = await _read(audit.client, "GET", "sessionId=nope", [])
    assert missing.status_code == 404
    text = (await audit.client.get("/api/metrics")).text
    lines = [ln for ln in text.splitlines() if 'route="/api/chat/stream"' in ln]
    assert any('status="200"' in ln for ln in lines), lines
    assert any('status="404"' in ln for ln in lines), lines
    assert not any(STREAM_PATH + "?" in ln for ln in text.splitlines())
    assert before != text


async def test_a_stream_stays_open_for_a_reply_in_flight_and_ends_when_it_does(
    audit: Audit,
) -> None:
    alice = await audit.world.register("alice")
    started = await audit.start(alice["auth"], model=MODEL, message=f"fly {uuid.uuid4()}")
    events = await asyncio.wait_for(audit.events(started["sessionId"]), 20)
    assert events[-1][1] == "done"


async def test_two_patches_of_different_fields_at_once_keep_both_changes(
    audit: Audit, stack_urls: StackUrls
) -> None:
    """One tab renames the chat while another sets its system prompt: both answered 200 with
    their change, so the chat must end with both (UpdateChat reads the chat unlocked and
    writes every column back)."""
    alice = await audit.world.register("alice")
    started = await audit.start(
        alice["auth"], model=MODEL, message=f"hi {uuid.uuid4()}", systemPrompt="Old."
    )
    await audit.events(started["sessionId"])
    url = f"/api/chats/{started['chatId']}"
    race = Race(audit.client, audit.world, stack_urls.database_url)
    lock = ("SELECT id FROM chats WHERE id = %(id)s FOR UPDATE", {"id": started["chatId"]})
    async with race.held(*lock):
        rename = await race.started(
            audit.client.patch(url, json={"title": "Renamed"}, headers=alice["auth"]), "chats", 1
        )
        instruct = await race.started(
            audit.client.patch(url, json={"systemPrompt": "New."}, headers=alice["auth"]),
            "chats", 2,
        )  # fmt: skip
    renamed, instructed = await rename, await instruct
    assert (renamed.status_code, instructed.status_code) == (200, 200)
    assert renamed.json()["title"] == "Renamed"
    assert instructed.json()["systemPrompt"] == "New."
    shown = (await audit.client.get(url, headers=alice["auth"])).json()
    assert (shown["title"], shown["systemPrompt"]) == ("Renamed", "New.")


# --- 4. /v1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/openai%2Fgpt-4o-mini",
        "/v1/models/openai/gpt-4o-mini/",
        "/v1/models//openai/gpt-4o-mini",
        "/v1/models/%00",
        "/v1/models/%ED%A0%80",
        "/v1/models/" + "x" * 5000,
        "/v1/models/../../api/usage",
    ],
)
async def test_odd_model_ids_on_v1_are_never_a_500(audit: Audit, path: str) -> None:
    alice = await audit.world.register("alice")
    response = await audit.client.get(path, headers=alice["auth"])
    _not_500(response)
    if response.status_code != 200:
        assert "error" in response.json(), response.text  # OpenAI's error shape


async def test_a_model_outside_the_plan_is_not_shown_by_id(audit: Audit) -> None:
    alice = await audit.world.register("alice")
    listed = (await audit.client.get("/v1/models", headers=alice["auth"])).json()["data"]
    ids = {m["id"] for m in listed}
    assert MODEL in ids
    one = await audit.client.get(f"/v1/models/{MODEL}", headers=alice["auth"])
    assert one.status_code == 200
    assert one.json()["id"] == MODEL
    assert one.headers["content-type"].startswith("application/json")
    for other in ("openai/gpt-4o", "anthropic/claude-3-5-sonnet", "openai/o1"):
        answer = await audit.client.get(f"/v1/models/{other}", headers=alice["auth"])
        assert (answer.status_code == 200) == (other in ids), (other, answer.text)
    assert (await audit.client.get(f"/v1/models/{MODEL}")).status_code == 401


async def _record(audit: Audit, user_id: str, when: Any, model: str = MODEL, **kw: Any) -> None:
    uow = await resolved(audit.world.container.adapters.unit_of_work())
    async with uow:
        await uow.usage.add(UsageRecord(
            id=uuid.uuid4(), user_id=uuid.UUID(user_id), message_id=None, model=model,
            provider=model.split("/")[0], prompt_tokens=kw.get("prompt", 10),
            completion_tokens=kw.get("completion", 5), cost_usd=kw.get("cost", 0.25),
            cached=kw.get("cached", False), created_at=when,
        ))  # fmt: skip
        await uow.commit()


async def test_usage_days_split_at_utc_midnight_across_the_new_year_and_lose_nothing(
    audit: Audit,
) -> None:
    alice = await audit.world.register("alice")
    uid = alice["user"]["id"]
    last = datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    first = datetime(2026, 1, 1, tzinfo=UTC)
    # 2026-01-01 00:30 in Paris is still 2025-12-31 in UTC
    paris = datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    await _record(audit, uid, last)
    await _record(audit, uid, first, model="anthropic/claude-3-5-haiku", cached=True, cost=0.0)
    await _record(audit, uid, paris, cost=0.5)
    await _record(audit, uid, datetime(2026, 1, 2, tzinfo=UTC) - timedelta(microseconds=1))
    both = await audit.client.get("/api/usage?from=2025-12-31&to=2026-01-01", headers=alice["auth"])
    assert both.status_code == 200, both.text
    body = both.json()
    assert body["total"]["requests"] == 4
    assert body["total"]["cachedRequests"] == 1
    assert body["total"]["costUsd"] == pytest.approx(1.0)
    days = {d["day"]: d["requests"] for d in body["byDay"]}
    assert days == {"2025-12-31": 2, "2026-01-01": 2}
    models = {m["model"]: m["requests"] for m in body["byModel"]}
    assert models == {MODEL: 3, "anthropic/claude-3-5-haiku": 1}
    assert body["byModel"][0]["model"] == MODEL  # the most expensive first
    old = await audit.client.get("/api/usage?from=2025-12-31&to=2025-12-31", headers=alice["auth"])
    assert old.json()["total"]["requests"] == 2
    new = await audit.client.get("/api/usage?from=2026-01-01&to=2026-01-01", headers=alice["auth"])
    assert new.json()["total"]["requests"] == 2
    bob = await audit.world.register("bob")
    theirs = await audit.client.get("/api/usage?from=2025-12-31&to=2026-01-01", headers=bob["auth"])
    assert theirs.json()["total"]["requests"] == 0
