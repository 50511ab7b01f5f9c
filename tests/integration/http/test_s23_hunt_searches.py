"""Hunt (s23): recurring web searches and their notifications on the real app (Postgres, Redis,
S3), runs executed in-process by the container's own ``RunSearchHandler`` against a loopback
SearXNG/Brave (``FakeSearchServer``) and a loopback SMTP server (``FakeSmtpServer``)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import getaddresses, parseaddr
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from tests.integration.http.conftest import chat_app, team_project
from tests.integration.http.test_chat_flow import Chat
from tests.integration.http.test_identity_end_to_end import PASSWORD
from tests.support.access import changed
from tests.support.fake_search import Answer, FakeSearchServer
from tests.support.fake_smtp import FakeSmtpServer
from tests.support.loopback_http import LoopbackHttpServer
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.search.brave import BraveWebSearch
from whalli.adapters.search.searxng import SearxngWebSearch
from whalli.config import ConfigError
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import RunSearchSubscription
from whalli.domain.model.notifications import Notification
from whalli.domain.model.searches import MAX_ACTIVE_SUBSCRIPTIONS
from whalli.domain.services.searches.run_search import RunSearchHandler

SENDER = "alerts@whalli.test"


@dataclass
class Hunt:
    chat: Chat
    web: FakeSearchServer
    smtp: FakeSmtpServer

    @property
    def client(self) -> Any:
        return self.chat.client

    async def user(self, name: str) -> dict[str, Any]:
        return await self.chat.world.register(name)

    async def verified_user(self, name: str) -> dict[str, Any]:
        """A user whose address counts as verified (as an OAuth sign-up's is): only such an
        address gets emails."""
        who = await self.user(name)
        await self.verify(who["user"]["id"])
        return who

    async def verify(self, user_id: str) -> None:
        uow = await resolved(self.chat.world.container.adapters.unit_of_work())
        async with uow:
            user = await uow.users.get(uuid.UUID(user_id))
            user.email_verified = True
            await uow.users.update(user)
            await uow.commit()
        await changed(self.chat.world.container, user_id)

    async def subscribe(self, who: dict[str, Any], query: str, **fields: Any) -> dict[str, Any]:
        body = {"query": query, "intervalMinutes": 60, **fields}
        made = await self.client.post("/api/searches", json=body, headers=who["auth"])
        assert made.status_code == 201, made.text
        found: dict[str, Any] = made.json()
        return found

    async def run(self, subscription_id: str) -> None:
        handler: RunSearchHandler = await resolved(self.chat.world.container.services.run_search())
        await handler.execute(RunSearchSubscription(subscription_id=uuid.UUID(subscription_id)))

    async def notifications(self, who: dict[str, Any], **params: Any) -> dict[str, Any]:
        listed = await self.client.get("/api/notifications", params=params, headers=who["auth"])
        assert listed.status_code == 200, listed.text
        page: dict[str, Any] = listed.json()
        return page


@pytest.fixture
def web() -> Iterator[FakeSearchServer]:
    server = FakeSearchServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    server = FakeSmtpServer().start()
    yield server
    server.stop()


@asynccontextmanager
async def hunt_app(
    stack_urls: StackUrls, unique: str, web: FakeSearchServer, smtp: FakeSmtpServer, **env: str
) -> AsyncIterator[Hunt]:
    settings = {
        "WHALLI_SEARCH_PROVIDER": "searxng",
        "WHALLI_SEARCH_BASE_URL": web.url,
        "WHALLI_SEARCH_SCHEDULE_INTERVAL_S": "0",
        "WHALLI_SMTP_HOST": "127.0.0.1",
        "WHALLI_SMTP_PORT": str(smtp.port),
        "WHALLI_SMTP_TLS": "none",
        "WHALLI_SMTP_FROM": SENDER,
        **env,
    }
    async with chat_app(stack_urls, unique, **settings) as chat:
        yield Hunt(chat, web, smtp)


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,
    smtp: FakeSmtpServer,
) -> AsyncIterator[Hunt]:  # fmt: skip
    async with hunt_app(stack_urls, unique, web, smtp) as found:
        yield found


def _problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    body: dict[str, Any] = answer.json()
    return body


# --- defects ---------------------------------------------------------------------------------


async def test_a_sender_with_a_display_name_still_gives_a_well_formed_message_id(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,
    smtp: FakeSmtpServer,
) -> None:  # fmt: skip
    named = f"Whalli Alerts <{SENDER}>"
    async with hunt_app(stack_urls, unique, web, smtp, WHALLI_SMTP_FROM=named) as hunt:
        ada = await hunt.verified_user("ada")
        made = await hunt.subscribe(ada, "display name sender")
        await hunt.run(made["id"])

    [email] = smtp.messages
    assert email.mail_from == SENDER
    message = email.parsed()
    assert parseaddr(str(message["From"])) == ("Whalli Alerts", SENDER)
    # RFC 5322 msg-id: "<" id-left "@" id-right ">"
    assert re.fullmatch(r"<[^<>@\s]+@whalli\.test>", str(message["Message-ID"]).strip())


@pytest.mark.parametrize("huge", [10**15, -(10**15)])  # minutes: beyond a timedelta
async def test_a_huge_interval_is_a_422_problem_on_create_and_on_change(
    hunt: Hunt, huge: int
) -> None:
    ada = await hunt.user("ada")
    made = await hunt.subscribe(ada, "huge interval")

    created = await hunt.client.post(
        "/api/searches", json={"query": "pg", "intervalMinutes": huge}, headers=ada["auth"]
    )
    changed = await hunt.client.patch(
        f"/api/searches/{made['id']}", json={"intervalMinutes": huge}, headers=ada["auth"]
    )

    for answer in (created, changed):
        assert _problem(answer, 422)["code"] == "invalid_schedule"
    listed = await hunt.client.get("/api/searches", headers=ada["auth"])
    assert [s["id"] for s in listed.json()["items"]] == [made["id"]]


async def test_a_member_made_viewer_can_still_stop_the_emails_of_their_own_search(
    hunt: Hunt,
) -> None:
    owner, bob = await hunt.user("owner"), await hunt.verified_user("bob")
    project = await team_project(hunt.chat, owner, bob, "editor")
    made = await hunt.subscribe(bob, "viewer emails", projectId=project)
    demoted = await hunt.client.patch(
        f"/api/projects/{project}/members/{bob['user']['id']}",
        json={"role": "viewer"}, headers=owner["auth"],
    )  # fmt: skip
    assert demoted.status_code == 200, demoted.text

    await hunt.run(made["id"])  # it still runs for a viewer (they may read the project) ...
    [email] = hunt.smtp.messages
    assert email.rcpt_to == [bob["email"]]
    assert '{"notifyEmail": false}' in email.parsed().get_content()

    # ... so the instruction the email gives them must work
    stop = await hunt.client.patch(
        f"/api/searches/{made['id']}", json={"notifyEmail": False}, headers=bob["auth"]
    )
    assert stop.status_code == 200, stop.text
    assert stop.json()["notifyEmail"] is False


async def test_searches_left_behind_in_a_project_do_not_hold_the_removed_members_cap(
    hunt: Hunt,
) -> None:
    owner, bob = await hunt.user("owner"), await hunt.user("bob")
    project = await team_project(hunt.chat, owner, bob, "editor")
    made = [
        await hunt.subscribe(bob, f"left behind {n}", projectId=project)
        for n in range(MAX_ACTIVE_SUBSCRIPTIONS)
    ]
    removed = await hunt.client.delete(
        f"/api/projects/{project}/members/{bob['user']['id']}", headers=owner["auth"]
    )
    assert removed.status_code == 204, removed.text
    # bob can no longer reach them (a 404, as for any project he is not in)
    gone = await hunt.client.patch(
        f"/api/searches/{made[0]['id']}", json={"active": False}, headers=bob["auth"]
    )
    assert gone.status_code == 404, gone.text

    own = await hunt.client.post(
        "/api/searches", json={"query": "my own", "intervalMinutes": 60}, headers=bob["auth"]
    )
    assert own.status_code == 201, own.text


@pytest.mark.parametrize("provider", ["searxng", "brave"])
async def test_a_rate_limited_provider_tells_the_queue_when_to_retry(
    web: FakeSearchServer, provider: str
) -> None:
    headers = {"retry-after": "120", "content-type": "text/plain"}
    if provider == "brave":  # Brave's own headers too: the per-second then the monthly window
        headers |= {"x-ratelimit-limit": "1, 15000", "x-ratelimit-remaining": "0, 14000",
                    "x-ratelimit-reset": "120, 1419704"}  # fmt: skip
    web.script(Answer(429, b"Too Many Requests", headers))
    async with httpx.AsyncClient() as http:
        search: SearxngWebSearch | BraveWebSearch = (
            SearxngWebSearch(http, base_url=web.url)
            if provider == "searxng"
            else BraveWebSearch(http, api_key=web.brave_key, base_url=web.brave_base_url)
        )
        with pytest.raises(ServiceUnavailable, match="answered HTTP 429") as raised:
            await search.search("rate limited")

    assert raised.value.details.get("retry_after") == 120


async def test_a_result_url_with_credentials_is_not_shown_nor_mailed(hunt: Hunt) -> None:
    ada = await hunt.verified_user("ada")
    query = "login page"
    hunt.web.hits[query] = [
        ("https://www.paypal.com@evil.example/login", "PayPal login", "Sign in"),
        ("https://user:secret@files.example/report", "Report", "A report"),
        ("https://good.example/page", "Good page", "Fine"),
    ]
    made = await hunt.subscribe(ada, query)
    await hunt.run(made["id"])

    listed = await hunt.client.get(f"/api/searches/{made['id']}/results", headers=ada["auth"])
    assert [r["url"] for r in listed.json()["items"]] == ["https://good.example/page"]
    [email] = hunt.smtp.messages
    assert "@evil.example" not in email.parsed().get_content()


# --- regression tests (behaviour found correct) ----------------------------------------------


async def test_a_non_ascii_query_and_results_reach_the_email_intact(hunt: Hunt) -> None:
    ada = await hunt.verified_user("ada")
    query = "überraschung café 東京 🚀"
    hunt.web.hits[query] = [("https://example.org/ü", "Tōkyō café — Überblick", "x")]
    made = await hunt.subscribe(ada, query)
    await hunt.run(made["id"])

    [email] = hunt.smtp.messages
    message = email.parsed()
    assert message["Subject"] == f"1 new result for {query}"
    assert "Tōkyō café — Überblick" in message.get_content()
    assert all(byte < 128 for byte in email.data.split(b"\r\n\r\n", 1)[0])  # headers: 7-bit


async def test_a_member_who_left_no_longer_sees_the_search_they_made_nor_is_notified(
    hunt: Hunt,
) -> None:
    owner, bob = await hunt.user("owner"), await hunt.user("bob")
    project = await team_project(hunt.chat, owner, bob, "editor")
    made = await hunt.subscribe(bob, "before leaving", projectId=project)
    left = await hunt.client.delete(
        f"/api/projects/{project}/members/{bob['user']['id']}", headers=bob["auth"]
    )
    assert left.status_code == 204, left.text

    await hunt.run(made["id"])

    for path in (f"/api/searches/{made['id']}", f"/api/searches/{made['id']}/results"):
        answer = await hunt.client.get(path, headers=bob["auth"])
        assert _problem(answer, 404)["code"] == "search_subscription_not_found"
    assert (await hunt.notifications(bob))["items"] == []
    assert hunt.smtp.messages == []
    assert hunt.web.requests == []  # not even searched
    # the owner still sees it in the project
    seen = await hunt.client.get(f"/api/searches/{made['id']}", headers=owner["auth"])
    assert seen.status_code == 200, seen.text


async def test_notifications_with_the_same_time_page_each_once(hunt: Hunt) -> None:
    ada = await hunt.user("ada")
    user_id = uuid.UUID(ada["user"]["id"])
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    uow = await resolved(hunt.chat.world.container.adapters.unit_of_work())
    async with uow:
        for n in range(7):
            await uow.notifications.add(
                Notification(id=uuid.uuid4(), user_id=user_id, kind="search_results",
                             title=f"{n} new results", link=None, created_at=at)
            )  # fmt: skip
        await uow.commit()

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await hunt.notifications(ada, **params)
        seen += [n["id"] for n in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == 7
    assert len(set(seen)) == 7


async def test_bad_page_parameters_are_problems(hunt: Hunt) -> None:
    ada = await hunt.user("ada")
    made = await hunt.subscribe(ada, "bad pages")
    for path in (
        "/api/notifications?limit=0",
        "/api/notifications?limit=101",
        "/api/notifications?cursor=not-a-cursor",
        f"/api/searches/{made['id']}/results?cursor=%%%",
        "/api/searches?limit=1000",
    ):
        answer = await hunt.client.get(path, headers=ada["auth"])
        assert 400 <= answer.status_code < 500, (path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), path


async def test_brave_without_a_web_member_finds_nothing_and_notifies_nothing(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,
    smtp: FakeSmtpServer,
) -> None:  # fmt: skip
    env = {"WHALLI_SEARCH_PROVIDER": "brave", "WHALLI_SEARCH_BASE_URL": web.brave_base_url,
           "WHALLI_SEARCH_API_KEY": web.brave_key}  # fmt: skip
    async with hunt_app(stack_urls, unique, web, smtp, **env) as hunt:
        ada = await hunt.user("ada")
        made = await hunt.subscribe(ada, "nothing at all")
        web.script(Answer(200, {"type": "search", "query": {"original": "nothing at all"}}))
        await hunt.run(made["id"])

        [request] = web.requests
        assert request.headers["x-subscription-token"] == web.brave_key
        assert (await hunt.notifications(ada))["items"] == []
        results = await hunt.client.get(f"/api/searches/{made['id']}/results", headers=ada["auth"])
        assert results.json() == {"items": [], "nextCursor": None}
    assert smtp.messages == []


class AsciiOnlySmtpServer(FakeSmtpServer):
    """A mail server that does not offer SMTPUTF8 (Amazon SES, many relays)."""

    async def _reply(self, verb: str, arg: str, *rest: Any) -> str:
        said = await super()._reply(verb, arg, *rest)
        return said.replace("250-SMTPUTF8\r\n", "") if verb == "EHLO" else said


async def test_an_idn_address_gets_its_email_through_a_server_without_smtputf8(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer
) -> None:
    ascii_only = AsciiOnlySmtpServer().start()
    try:
        async with hunt_app(stack_urls, unique, web, ascii_only) as hunt:
            email = f"idn-{uuid.uuid4().hex[:8]}@xn--bcher-kva.example"
            registered = await hunt.client.post(
                "/api/auth/register", json={"email": email, "password": PASSWORD, "name": "I"}
            )
            assert registered.status_code == 201, registered.text
            await hunt.verify(registered.json()["user"]["id"])
            who = {
                "auth": {"Authorization": f"Bearer {registered.json()['tokens']['accessToken']}"}
            }
            made = await hunt.subscribe(who, "idn address")
            await hunt.run(made["id"])
            assert len((await hunt.notifications(who))["items"]) == 1
    finally:
        ascii_only.stop()

    [sent] = ascii_only.messages
    assert sent.rcpt_to == [email]


async def test_a_query_with_a_nul_character_is_a_problem_or_stored_without_it(hunt: Hunt) -> None:
    ada = await hunt.user("ada")
    answer = await hunt.client.post(
        "/api/searches", json={"query": "pg\u0000news", "intervalMinutes": 60}, headers=ada["auth"]
    )
    assert answer.status_code in (201, 422), answer.text
    if answer.status_code == 201:
        assert "\u0000" not in answer.json()["query"]


def _dripping_handler(body: bytes, pause_s: float) -> type[BaseHTTPRequestHandler]:
    """A search API that answers 200 at once, then sends its JSON one byte per ``pause_s``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            try:
                for byte in body:
                    time.sleep(pause_s)
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            except OSError:  # the client gave up
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


async def test_a_provider_trickling_its_answer_is_cut_at_the_search_timeout() -> None:
    body = json.dumps({"query": "slow", "results": [], "answers": []}).encode()
    server = LoopbackHttpServer(_dripping_handler(body, pause_s=0.2)).start()
    try:
        async with httpx.AsyncClient() as http:
            search = SearxngWebSearch(http, base_url=server.url, timeout_s=1.0)
            # the whole answer takes len(body) * 0.2 s (about 9 s): far over the 1 s timeout
            with pytest.raises(ServiceUnavailable, match="did not answer in time"):
                await search.search("slow")
    finally:
        server.stop()


def _held_handler(release: threading.Event, asked: threading.Event) -> type[BaseHTTPRequestHandler]:
    """A SearXNG that answers one result only once ``release`` is set."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            asked.set()
            release.wait(timeout=30)
            hit = {"url": "https://held.example/1", "title": "Held", "content": "x"}
            body = json.dumps({"query": "held", "results": [hit]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.mark.parametrize("change", ["delete", "pause"])
async def test_a_search_deleted_or_paused_while_its_run_waits_for_the_provider_notifies_nothing(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,
    smtp: FakeSmtpServer, change: str,
) -> None:  # fmt: skip
    release, asked = threading.Event(), threading.Event()
    held = LoopbackHttpServer(_held_handler(release, asked)).start()
    try:
        async with hunt_app(stack_urls, unique, web, smtp, WHALLI_SEARCH_BASE_URL=held.url) as hunt:
            ada = await hunt.user("ada")
            made = await hunt.subscribe(ada, "held")
            run = asyncio.create_task(hunt.run(made["id"]))
            assert await asyncio.to_thread(asked.wait, 30)
            path = f"/api/searches/{made['id']}"
            if change == "delete":
                done = await hunt.client.delete(path, headers=ada["auth"])
                assert done.status_code == 204, done.text
            else:
                done = await hunt.client.patch(path, json={"active": False}, headers=ada["auth"])
                assert done.status_code == 200, done.text
            release.set()
            await run  # no error: the run finds it gone or paused

            assert (await hunt.notifications(ada))["items"] == []
            if change == "pause":
                results = await hunt.client.get(f"{path}/results", headers=ada["auth"])
                assert results.json()["items"] == []
    finally:
        release.set()
        held.stop()
    assert smtp.messages == []


async def test_a_new_query_stays_due_at_once_when_the_interval_is_changed_next(
    hunt: Hunt,
) -> None:
    ada = await hunt.user("ada")
    made = await hunt.subscribe(ada, "old query")
    ran_at = datetime.now(UTC) - timedelta(minutes=10)  # as if it ran ten minutes ago
    uow = await resolved(hunt.chat.world.container.adapters.unit_of_work())
    async with uow:
        found = await uow.searches.get(uuid.UUID(made["id"]))
        found.claim(ran_at)
        found.record_run(ran_at)
        await uow.searches.update(found)
        await uow.commit()
    path = f"/api/searches/{made['id']}"

    requeried = await hunt.client.patch(path, json={"query": "new query"}, headers=ada["auth"])
    assert requeried.status_code == 200, requeried.text
    due_at = datetime.fromisoformat(requeried.json()["nextRunAt"])
    assert due_at < ran_at + timedelta(minutes=60)  # the new query runs at once...
    slower = await hunt.client.patch(path, json={"intervalMinutes": 120}, headers=ada["auth"])
    assert slower.status_code == 200, slower.text

    # ... and still does after the interval changed: it has not run yet
    assert datetime.fromisoformat(slower.json()["nextRunAt"]) <= due_at


async def test_a_sender_display_name_with_a_comma_is_one_mailbox_or_refused_at_start_up(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,
    smtp: FakeSmtpServer,
) -> None:  # fmt: skip
    named = f"Whalli, Inc. <{SENDER}>"
    try:
        async with hunt_app(stack_urls, unique, web, smtp, WHALLI_SMTP_FROM=named) as hunt:
            ada = await hunt.user("ada")
            made = await hunt.subscribe(ada, "comma in the sender")
            await hunt.run(made["id"])
    except ConfigError as e:  # refused at start-up, naming the variable: fine too
        refused: ConfigError | None = e
    else:
        refused = None
    if refused is not None:
        assert "SMTP_FROM" in str(refused)
        return

    [email] = smtp.messages
    assert email.mail_from == SENDER
    assert getaddresses([str(email.parsed()["From"])]) == [("Whalli, Inc.", SENDER)]


async def test_emails_go_only_to_a_verified_address(hunt: Hunt) -> None:
    stranger = await hunt.user("victim")  # signed up with a password: its address unchecked
    me = await hunt.client.get("/api/auth/me", headers=stranger["auth"])
    assert me.json()["emailVerified"] is False
    spam = await hunt.subscribe(stranger, "cheap pills buy now", notifyEmail=True)
    verified = {"auth": await hunt.chat.world.create_admin()}  # made by an admin: verified
    wanted = await hunt.subscribe(verified, "verified address query", notifyEmail=True)

    await hunt.run(spam["id"])
    await hunt.run(wanted["id"])

    assert len((await hunt.notifications(stranger))["items"]) == 1  # in-app: as ever
    subjects = [m.parsed()["Subject"] for m in hunt.smtp.messages]
    assert subjects == ["3 new results for verified address query"]


async def test_the_results_of_one_run_are_listed_best_first(hunt: Hunt) -> None:
    ada = await hunt.user("ada")
    query = "ranked results"
    ranked = [(f"https://rank.example/{n}", f"Rank {n}", "x") for n in (1, 2, 3)]
    hunt.web.hits[query] = ranked
    made = await hunt.subscribe(ada, query)
    await hunt.run(made["id"])

    [notification] = (await hunt.notifications(ada))["items"]
    assert notification["body"].splitlines() == ["Rank 1", "Rank 2", "Rank 3"]
    listed = await hunt.client.get(f"/api/searches/{made['id']}/results", headers=ada["auth"])
    assert [r["title"] for r in listed.json()["items"]] == ["Rank 1", "Rank 2", "Rank 3"]


async def test_one_page_found_twice_in_one_run_is_stored_and_counted_once(hunt: Hunt) -> None:
    ada = await hunt.verified_user("ada")
    query = "duplicates in one run"
    hunt.web.hits[query] = [
        ("https://dup.example/a", "A", "x"),
        ("https://dup.example/a/", "A again", "x"),
        ("https://DUP.example/a#part", "A, a part", "x"),
        ("https://dup.example/b", "B", "x"),
    ]
    made = await hunt.subscribe(ada, query)
    await hunt.run(made["id"])
    await hunt.run(made["id"])  # a later run finding the same: nothing new

    [notification] = (await hunt.notifications(ada))["items"]
    assert notification["title"] == f"2 new results for {query}"
    listed = await hunt.client.get(f"/api/searches/{made['id']}/results", headers=ada["auth"])
    assert sorted(r["url"] for r in listed.json()["items"]) == [
        "https://dup.example/a",
        "https://dup.example/b",
    ]
    [email] = hunt.smtp.messages
    assert email.parsed()["Subject"] == f"2 new results for {query}"


async def test_the_email_names_the_api_path_under_the_configured_root_path(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,
    smtp: FakeSmtpServer,
) -> None:  # fmt: skip
    """The worker's container gives its run the API's ``WHALLI_ROOT_PATH``: an API served
    below ``/whalli`` is not at ``/api/...``, and the email's instruction must reach it."""
    async with hunt_app(stack_urls, unique, web, smtp, WHALLI_ROOT_PATH="/whalli") as hunt:
        ada = await hunt.verified_user("ada")
        made = await hunt.subscribe(ada, "rooted emails")
        await hunt.run(made["id"])

    [email] = smtp.messages
    text = email.parsed().get_content()
    assert f'PATCH /whalli/api/searches/{made["id"]} {{"notifyEmail": false}}' in text
