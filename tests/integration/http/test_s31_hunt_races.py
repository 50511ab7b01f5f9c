"""Hunt (s31): the "at most N" and "exactly one" rules, and changes of one row, under
concurrent requests, on the real app (uvicorn, Postgres, Redis, S3).

Where requests must be in flight together, the test holds a lock from a connection of its own
(``held``): the requests queue on it (their waits are read from ``pg_blocking_pids``), then it
is let go. Without the app's own lock each request has read what it checks before any of them
writes; with it they wait before reading, and run one after the other. No sleep decides an
outcome.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, LiteralString

import psycopg
import pytest

from tests.integration.http.conftest import chat_app
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import PASSWORD
from tests.integration.http.test_s23_hunt_searches import web  # noqa: F401  (fixture)
from tests.support.fake_search import FakeSearchServer
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.presets import MAX_PRESETS
from whalli.domain.model.searches import MAX_ACTIVE_SUBSCRIPTIONS

MODEL = "openai/gpt-4o-mini"
AT_ONCE = 6  # requests in flight together (fewer than the app's 10 pooled connections)
# the backends waiting, directly or behind another waiter, for the holder ``%(pid)s``
_WAITING = (
    "WITH RECURSIVE chain(pid) AS (SELECT %(pid)s::int UNION "
    "SELECT a.pid FROM pg_stat_activity a JOIN chain ON chain.pid = ANY(pg_blocking_pids(a.pid))) "
    "SELECT count(*) - 1 FROM chain"
)


class Held:
    def __init__(self, database_url: str, pid: int) -> None:
        self.database_url, self.pid = database_url, pid

    async def waited_by(self, count: int) -> None:
        """Until ``count`` backends wait for the held lock (or for one of its waiters)."""
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            for _ in range(3000):
                row = await (await conn.execute(_WAITING, {"pid": self.pid})).fetchone()
                if row is not None and row[0] >= count:
                    return
                await asyncio.sleep(0.005)
        raise AssertionError(f"{count} requests never waited for the held lock")


@asynccontextmanager
async def held(database_url: str, statement: LiteralString, **params: Any) -> AsyncIterator[Held]:
    """Hold what ``statement`` locks until the block ends."""
    conn = await psycopg.AsyncConnection.connect(database_url)
    async with conn, conn.transaction():
        await conn.execute(statement, params)
        yield Held(database_url, conn.info.backend_pid)


_LOCK_USER = "SELECT 1 FROM users WHERE id = %(id)s FOR UPDATE"


@pytest.fixture
async def chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    web: FakeSearchServer,  # noqa: F811
) -> AsyncIterator[Chat]:  # fmt: skip
    settings = {
        "WHALLI_SEARCH_PROVIDER": "searxng",
        "WHALLI_SEARCH_BASE_URL": web.url,
        "WHALLI_SEARCH_SCHEDULE_INTERVAL_S": "0",  # no scheduler: nothing runs meanwhile
    }
    async with chat_app(stack_urls, unique, **settings) as found:
        yield found


async def _released_together(lock: Held, *requests: Any) -> list[asyncio.Future[Any]]:
    """Start ``requests`` and return them once they all wait for ``lock`` (or for another
    waiter); the caller then lets go."""
    tasks = [asyncio.ensure_future(r) for r in requests]
    await lock.waited_by(len(tasks))
    return tasks


def _statuses(responses: list[Any]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def _searches(chat: Chat, who: dict[str, Any]) -> list[dict[str, Any]]:
    listed = await chat.client.get("/api/searches?limit=100", headers=who["auth"])
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()["items"]
    return items


async def _subscribe(chat: Chat, who: dict[str, Any], query: str) -> dict[str, Any]:
    body = {"query": query, "intervalMinutes": 60}
    made = await chat.client.post("/api/searches", json=body, headers=who["auth"])
    assert made.status_code == 201, made.text
    found: dict[str, Any] = made.json()
    return found


async def _pause(chat: Chat, who: dict[str, Any], search_id: str, active: bool) -> Any:
    return await chat.client.patch(
        f"/api/searches/{search_id}", json={"active": active}, headers=who["auth"]
    )


async def test_presets_saved_together_past_the_last_free_place_never_exceed_the_limit(
    chat: Chat, migrated_database_url: str
) -> None:
    ada = await chat.world.register("ada")
    for i in range(MAX_PRESETS - 1):
        body = {"name": f"p{i}", "model": MODEL}
        made = await chat.client.post("/api/presets", json=body, headers=ada["auth"])
        assert made.status_code == 201, made.text

    async with held(migrated_database_url, _LOCK_USER, id=ada["user"]["id"]) as lock:
        tasks = await _released_together(lock, *(
            chat.client.post(
                "/api/presets", json={"name": f"q{i}", "model": MODEL}, headers=ada["auth"]
            )
            for i in range(AT_ONCE)
        ))  # fmt: skip
    answers = await asyncio.gather(*tasks)

    assert _statuses(answers) == {201: 1, 422: AT_ONCE - 1}, [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 422).json()
    assert refused["code"] == "preset_limit_reached", refused
    listed = await chat.client.get("/api/presets", headers=ada["auth"])
    assert len(listed.json()) == MAX_PRESETS


async def test_searches_created_together_past_the_last_free_place_never_exceed_the_cap(
    chat: Chat, migrated_database_url: str
) -> None:
    ada = await chat.world.register("ada")
    for i in range(MAX_ACTIVE_SUBSCRIPTIONS - 1):
        await _subscribe(chat, ada, f"q{i}")

    async with held(migrated_database_url, _LOCK_USER, id=ada["user"]["id"]) as lock:
        tasks = await _released_together(lock, *(
            chat.client.post(
                "/api/searches", json={"query": f"r{i}", "intervalMinutes": 60},
                headers=ada["auth"],
            )
            for i in range(AT_ONCE)
        ))  # fmt: skip
    answers = await asyncio.gather(*tasks)

    assert _statuses(answers) == {201: 1, 409: AT_ONCE - 1}, [a.text for a in answers]
    assert next(a for a in answers if a.status_code == 409).json()["code"] == (
        "search_limit_reached"
    )
    assert sum(s["active"] for s in await _searches(chat, ada)) == MAX_ACTIVE_SUBSCRIPTIONS


async def test_paused_searches_resumed_together_past_the_last_free_place_never_exceed_the_cap(
    chat: Chat, migrated_database_url: str
) -> None:
    ada = await chat.world.register("ada")
    made = [await _subscribe(chat, ada, f"q{i}") for i in range(MAX_ACTIVE_SUBSCRIPTIONS)]
    paused = [s["id"] for s in made[:AT_ONCE]]
    for search_id in paused:
        assert (await _pause(chat, ada, search_id, False)).status_code == 200
    for i in range(AT_ONCE - 1):  # one free place left
        await _subscribe(chat, ada, f"r{i}")

    # writes to the table wait (reads and row locks do not): each resume has counted the
    # active searches by the time it waits to write
    share = "LOCK TABLE search_subscriptions IN SHARE MODE"
    async with held(migrated_database_url, share) as lock:
        tasks = await _released_together(
            lock, *(_pause(chat, ada, search_id, True) for search_id in paused)
        )
    answers = await asyncio.gather(*tasks)

    assert _statuses(answers) == {200: 1, 409: AT_ONCE - 1}, [a.text for a in answers]
    assert sum(s["active"] for s in await _searches(chat, ada)) == MAX_ACTIVE_SUBSCRIPTIONS


async def test_two_tabs_changing_a_presets_name_and_its_prompt_at_once_keep_both_changes(
    chat: Chat, migrated_database_url: str
) -> None:
    ada = await chat.world.register("ada")
    body = {"name": "Coder", "model": MODEL, "systemPrompt": "Code only."}
    made = (await chat.client.post("/api/presets", json=body, headers=ada["auth"])).json()
    path = f"/api/presets/{made['id']}"

    lock_preset = "SELECT 1 FROM presets WHERE id = %(id)s FOR UPDATE"
    async with held(migrated_database_url, lock_preset, id=made["id"]) as lock:
        tasks = await _released_together(
            lock,
            chat.client.patch(path, json={"name": "Terse coder"}, headers=ada["auth"]),
            chat.client.patch(path, json={"systemPrompt": "Python only."}, headers=ada["auth"]),
        )
    answers = await asyncio.gather(*tasks)

    assert _statuses(answers) == {200: 2}, [a.text for a in answers]
    stored = (await chat.client.get("/api/presets", headers=ada["auth"])).json()
    assert [(p["name"], p["systemPrompt"]) for p in stored] == [("Terse coder", "Python only.")]


async def test_a_user_renaming_themself_as_an_admin_disables_them_stays_disabled(
    chat: Chat, migrated_database_url: str
) -> None:
    """The rename read the account before the disabling committed; writing all of it back
    after, it would enable the account again (and undo a plan or role change the same way)."""
    admin = await chat.world.create_admin()
    ada = await chat.world.register("ada")
    user_id = ada["user"]["id"]

    async with held(migrated_database_url, _LOCK_USER, id=user_id) as lock:
        disabling = await _released_together(
            lock, chat.client.patch(
                f"/api/admin/users/{user_id}", json={"disabled": True}, headers=admin
            ),
        )  # fmt: skip
        renaming = await _released_together(
            lock, chat.client.patch("/api/auth/me", json={"name": "Ada L."}, headers=ada["auth"])
        )
        await lock.waited_by(2)
    disabled, renamed = await asyncio.gather(*disabling, *renaming)

    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True
    assert renamed.status_code == 200, renamed.text
    login = await chat.client.post(
        "/api/auth/login", json={"email": ada["email"], "password": PASSWORD}
    )
    assert login.status_code in (401, 403), login.text
    found = await chat.client.get("/api/admin/users", params={"q": ada["email"]}, headers=admin)
    [shown] = found.json()["items"]
    assert (shown["disabled"], shown["name"]) == (True, "Ada L."), shown


async def test_a_sign_in_rehashing_the_password_as_an_admin_disables_the_account_is_refused(
    chat: Chat, stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """A server with stronger hashing settings stores a new hash at sign-in, written back with
    the account it read before the disabling committed: the account would be enabled again
    (and signed in)."""
    admin = await chat.world.create_admin()
    ada = await chat.world.register("ada")
    user_id = ada["user"]["id"]

    async with chat_app(stack_urls, unique, WHALLI_PASSWORD_HASH_TIME_COST="3") as stronger:
        async with held(migrated_database_url, _LOCK_USER, id=user_id) as lock:
            disabling = await _released_together(
                lock, chat.client.patch(
                    f"/api/admin/users/{user_id}", json={"disabled": True}, headers=admin
                ),
            )  # fmt: skip
            body = {"email": ada["email"], "password": PASSWORD}
            signing_in = await _released_together(
                lock, stronger.client.post("/api/auth/login", json=body)
            )
            await lock.waited_by(2)
        disabled, signed_in = await asyncio.gather(*disabling, *signing_in)

    assert disabled.status_code == 200, disabled.text
    assert signed_in.status_code == 401, signed_in.text
    again = await chat.client.post("/api/auth/login", json=body)
    assert again.status_code == 401, again.text
    found = await chat.client.get("/api/admin/users", params={"q": ada["email"]}, headers=admin)
    assert [u["disabled"] for u in found.json()["items"]] == [True]
