"""Recurring searches end to end on real Postgres and Redis: subscriptions made over HTTP by the
app, run by the production worker (``whalli worker``, its own process, same queue) against a
loopback SearXNG, emailed through a loopback SMTP server; the worker's scheduler running a due
subscription on its own (on a database of its own: the scheduler claims every due row); a
redelivered or doubled job storing and notifying each result once; the 404s of a
subscription someone else cannot see; and a job the queue gives up on showing why on its
search (``lastError``), also where the job itself cannot tell: its last attempt failing in the
database (not the provider's outage, which the job records itself), a job older than the
queue's age limit (dropped unrun), one whose workers kept dying while running it (the delivery
limit); the search is told before the message is dead-lettered, so those tests wait for the
dead letter. Waits are bounded; nothing asserts how long anything took."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from dramatiq.message import Message
from redis.asyncio import Redis

from tests.integration.http.test_identity_end_to_end import _settings
from tests.integration.http.test_openai_sdk_end_to_end import _api_key
from tests.integration.test_extraction_worker import Worker, eventually
from tests.integration.test_title_worker import worker_env
from tests.integration.test_worker import dead_letters
from tests.support.fake_search import Answer, FakeSearchServer, default_hits
from tests.support.fake_smtp import FakeSmtpServer
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.dramatiq.broker import DEFAULT_MAX_AGE_MS, create_broker
from whalli.adapters.dramatiq.job_queue import job_message
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import Container, build_container
from whalli.domain.model.jobs import RunSearchSubscription, decode_job
from whalli.domain.services.searches.run_search import RunSearchHandler
from whalli.entrypoints.http.asgi import build_app

SENDER = "alerts@whalli.test"


@dataclass
class Searches:
    client: httpx.AsyncClient
    container: Container
    web: FakeSearchServer
    smtp: FakeSmtpServer
    auth: dict[str, str]
    email: str
    env: dict[str, str]

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = kw.pop("auth", self.auth)
        return await self.client.request(method, path, json=body, headers=headers, **kw)

    async def subscribe(self, query: str, **fields: Any) -> dict[str, Any]:
        body = {"query": query, "intervalMinutes": 60, **fields}
        created = await self.call("POST", "/api/searches", body)
        assert created.status_code == 201, created.text
        found: dict[str, Any] = created.json()
        return found

    async def enqueue(self, subscription_id: str) -> None:
        queue = await resolved(self.container.adapters.job_queue())
        await queue.enqueue(RunSearchSubscription(subscription_id=uuid.UUID(subscription_id)))

    async def notifications(self) -> list[dict[str, Any]]:
        listed = await self.call("GET", "/api/notifications")
        assert listed.status_code == 200, listed.text
        items: list[dict[str, Any]] = listed.json()["items"]
        return items

    async def results(self, subscription_id: str) -> list[str]:
        listed = await self.call("GET", f"/api/searches/{subscription_id}/results")
        assert listed.status_code == 200, listed.text
        return [r["url"] for r in listed.json()["items"]]

    async def run_here(self) -> RunSearchHandler:
        handler: RunSearchHandler = await resolved(self.container.services.run_search())
        return handler


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
async def _searches(
    stack_urls: StackUrls, unique: str, web: FakeSearchServer, smtp: FakeSmtpServer,
    **extra: str,
) -> AsyncIterator[Searches]:  # fmt: skip
    """The app searching ``web`` and emailing through ``smtp``, on its own queue, with a caller
    whose address is verified; ``extra`` settings go to the app and to its worker."""
    queue_name = f"search-test-{unique}"
    env = {
        "WHALLI_QUEUE_NAME": queue_name,
        "WHALLI_SEARCH_PROVIDER": "searxng",
        "WHALLI_SEARCH_BASE_URL": web.url,
        "WHALLI_SMTP_HOST": "127.0.0.1",
        "WHALLI_SMTP_PORT": str(smtp.port),
        "WHALLI_SMTP_TLS": "none",
        "WHALLI_SMTP_FROM": SENDER,
        **extra,
    }
    settings = _settings(stack_urls, unique, **env)
    container = build_container(settings)
    try:
        async with live_server(build_app(settings, container)) as client:
            api_key, user_id = await _api_key(client)
            async with await resolved(container.adapters.unit_of_work()) as uow:
                user = await uow.users.get(user_id)
                user.email_verified = True  # only a verified address gets emails
                await uow.users.update(user)
                await uow.commit()
            auth = {"Authorization": f"Bearer {api_key}"}
            me = await client.get("/api/auth/me", headers=auth)
            yield Searches(client, container, web, smtp, auth, me.json()["email"], env)
    finally:
        async with Redis.from_url(stack_urls.redis_url) as redis:
            async for key in redis.scan_iter(match=f"{queue_name}:*"):
                await redis.delete(key)


@pytest.fixture
async def searches(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, web: FakeSearchServer,
    smtp: FakeSmtpServer,
) -> AsyncIterator[Searches]:  # fmt: skip
    async with _searches(stack_urls, unique, web, smtp) as found:
        yield found


@pytest.fixture
async def alone(
    stack_urls: StackUrls, own_database: str, unique: str, web: FakeSearchServer,
    smtp: FakeSmtpServer,
) -> AsyncIterator[Searches]:  # fmt: skip
    """``searches`` on a database of its own (``own_database``), app and worker alike: the
    scheduler claims every due subscription of its database, so in the shared one it would run
    (and move) other tests' leftovers, and another test's scheduler could take this one's."""
    async with _searches(stack_urls, unique, web, smtp, WHALLI_DATABASE_URL=own_database) as found:
        yield found


def _worker(
    searches: Searches, stack_urls: StackUrls, unique: str, tmp_path: Path, **extra: str
) -> Worker:
    env = worker_env(
        stack_urls, queue_name=searches.env["WHALLI_QUEUE_NAME"], bucket=f"e2e-{unique}",
        provider_url="http://127.0.0.1:9/v1", tmp_path=tmp_path,
    )  # fmt: skip
    env.update(searches.env)
    env.update({"WHALLI_SEARCH_SCHEDULE_INTERVAL_S": "0", **extra})
    return Worker(env, tmp_path, tmp_path / "worker.log")


@pytest.fixture
def worker(
    searches: Searches, stack_urls: StackUrls, unique: str, tmp_path: Path
) -> Iterator[Worker]:
    started = _worker(searches, stack_urls, unique, tmp_path)
    yield started
    started.close()


# Its workers are noticed dead after two seconds without a heartbeat, by maintenance run on
# every broker command; a second delivery that never finished is one too many.
DYING = {
    "WHALLI_JOB_MAX_DELIVERIES": "1",
    "WHALLI_WORKER_HEARTBEAT_TIMEOUT_MS": "2000",
    "WHALLI_WORKER_MAINTENANCE_CHANCE": "1000000",
}
REFUSE_RESULTS = """
CREATE FUNCTION refuse_results() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'results refused by the test'; END $$;
CREATE TRIGGER refuse_results BEFORE INSERT ON search_results
FOR EACH STATEMENT EXECUTE FUNCTION refuse_results();
"""


async def _dead_letter(searches: Searches, redis_url: str, worker: Worker) -> Message[Any]:
    read = dead_letters(redis_url, searches.env["WHALLI_QUEUE_NAME"])
    [dead] = await eventually(read, worker)
    found: Message[Any] = dead
    return found


async def _search(searches: Searches, subscription_id: str) -> dict[str, Any]:
    found = await searches.call("GET", f"/api/searches/{subscription_id}")
    assert found.status_code == 200, found.text
    shown: dict[str, Any] = found.json()
    return shown


async def test_a_queued_run_stores_results_notifies_in_app_and_emails_the_user(
    searches: Searches, worker: Worker
) -> None:
    made = await searches.subscribe("postgres 18 release")
    await searches.enqueue(made["id"])

    [notification] = await eventually(searches.notifications, worker)
    assert notification["title"] == "3 new results for postgres 18 release"
    assert notification["link"] == f"/api/searches/{made['id']}/results"
    assert notification["readAt"] is None
    expected = [url for url, _, _ in default_hits("postgres 18 release")]
    assert sorted(await searches.results(made["id"])) == sorted(expected)
    [request] = searches.web.requests
    assert request.params["q"] == "postgres 18 release"
    assert request.params["format"] == "json"

    async def emailed() -> list[Any]:
        return searches.smtp.messages

    [email] = await eventually(emailed, worker)
    message = email.parsed()
    assert (email.mail_from, email.rcpt_to) == (SENDER, [searches.email])
    assert message["Subject"] == "3 new results for postgres 18 release"
    for url in expected:
        assert url in message.get_content()
    listed = (await searches.call("GET", "/api/searches")).json()["items"]
    assert listed[0]["id"] == made["id"]


async def test_the_workers_scheduler_runs_a_due_subscription_without_being_asked(
    alone: Searches, stack_urls: StackUrls, unique: str, tmp_path: Path
) -> None:
    made = await alone.subscribe("scheduled query", notifyEmail=False)
    scheduling = _worker(alone, stack_urls, unique, tmp_path,
                         WHALLI_SEARCH_SCHEDULE_INTERVAL_S="0.2")  # fmt: skip
    try:

        async def notified() -> list[dict[str, Any]]:
            return [n for n in await alone.notifications() if "scheduled query" in n["title"]]

        [notification] = await eventually(notified, scheduling)
    finally:
        scheduling.close()

    assert notification["title"] == "3 new results for scheduled query"
    stored = (await alone.call("GET", f"/api/searches/{made['id']}")).json()
    assert stored["lastRunAt"] is not None
    assert stored["nextRunAt"] > stored["lastRunAt"]
    # the database holds this search alone: the scheduler ran it, once, and nothing else
    assert [request.params["q"] for request in alone.web.requests] == ["scheduled query"]
    assert alone.smtp.messages == []  # notifyEmail off


async def test_a_redelivered_or_doubled_run_stores_and_notifies_each_result_once(
    searches: Searches,
) -> None:
    made = await searches.subscribe("redelivered query")
    job = RunSearchSubscription(subscription_id=uuid.UUID(made["id"]))
    await (await searches.run_here()).execute(job)
    await (await searches.run_here()).execute(job)  # the queue delivers it again
    doubled = await searches.subscribe("doubled query")
    twin = RunSearchSubscription(subscription_id=uuid.UUID(doubled["id"]))
    await asyncio.gather(*[(await searches.run_here()).execute(twin) for _ in range(2)])

    assert len(await searches.results(made["id"])) == 3
    assert len(await searches.results(doubled["id"])) == 3
    titles = sorted(n["title"] for n in await searches.notifications())
    assert titles == ["3 new results for doubled query", "3 new results for redelivered query"]
    assert sorted(m.parsed()["Subject"] for m in searches.smtp.messages) == titles
    assert len(searches.web.requests) == 4


async def test_someone_else_gets_404_for_a_subscription_and_its_results(
    searches: Searches,
) -> None:
    made = await searches.subscribe("private query")
    other_key, _ = await _api_key(searches.client)
    other = {"Authorization": f"Bearer {other_key}"}
    path = f"/api/searches/{made['id']}"

    for method, url, body in [
        ("GET", path, None), ("PATCH", path, {"active": False}), ("DELETE", path, None),
        ("GET", f"{path}/results", None),
    ]:  # fmt: skip
        answer = await searches.call(method, url, body, auth=other)
        assert answer.status_code == 404, answer.text
        assert answer.json()["code"] == "search_subscription_not_found"
    own = await searches.call("GET", "/api/searches", auth=other)
    assert own.json() == {"items": [], "nextCursor": None}
    assert (await searches.call("GET", path)).json()["active"] is True


async def test_notifications_are_marked_read_one_by_one_or_all_at_once(
    searches: Searches,
) -> None:
    for query in ("first query", "second query"):
        made = await searches.subscribe(query, notifyEmail=False)
        await (await searches.run_here()).execute(
            RunSearchSubscription(subscription_id=uuid.UUID(made["id"]))
        )
    newest, oldest = await searches.notifications()

    read = await searches.call("POST", f"/api/notifications/{oldest['id']}/read")
    assert read.status_code == 200, read.text
    unread = (await searches.call("GET", "/api/notifications", params={"unread": "true"})).json()
    assert [n["id"] for n in unread["items"]] == [newest["id"]]
    assert (await searches.call("GET", "/api/notifications/unread-count")).json() == {"count": 1}
    assert (await searches.call("POST", "/api/notifications/read-all")).json() == {"marked": 1}
    assert (await searches.call("GET", "/api/notifications/unread-count")).json() == {"count": 0}


async def test_an_outage_the_queue_retries_shows_no_error_until_its_last_attempt_failed(
    searches: Searches, stack_urls: StackUrls, unique: str, tmp_path: Path
) -> None:
    held = await searches.subscribe("outage retried later", notifyEmail=False)
    given_up = await searches.subscribe("outage given up", notifyEmail=False)
    retrying = _worker(searches, stack_urls, unique, tmp_path, WHALLI_JOB_MAX_RETRIES="1")
    try:
        # a retry an hour away: the failure stays the only attempt while the test looks
        searches.web.script(Answer(503, b"busy", {"retry-after": "3600"}))
        await searches.enqueue(held["id"])

        async def retry_queued() -> bool:
            return "Retrying RunSearchSubscription" in retrying.log()

        await eventually(retry_queued, retrying)  # logged after the handler gave up this attempt
        waiting = (await searches.call("GET", f"/api/searches/{held['id']}")).json()

        searches.web.script(Answer(503, b"busy"), Answer(503, b"still busy"))
        await searches.enqueue(given_up["id"])

        async def failed() -> dict[str, Any] | None:
            found = (await searches.call("GET", f"/api/searches/{given_up['id']}")).json()
            return found if found["lastError"] else None

        await eventually(failed, retrying)
        await _dead_letter(searches, stack_urls.redis_url, retrying)  # the queue was told too
        gave_up = await _search(searches, given_up["id"])
    finally:
        retrying.close()

    assert (waiting["lastError"], waiting["lastErrorAt"]) == (None, None)
    assert gave_up["lastError"] == "The search provider failed (HTTP 503)."
    assert gave_up["lastRunAt"] is None
    queries = [r.params["q"] for r in searches.web.requests]
    assert queries == ["outage retried later", "outage given up", "outage given up"]


async def test_a_run_whose_last_attempt_fails_in_the_database_shows_it_could_not_run(
    alone: Searches, stack_urls: StackUrls, unique: str, tmp_path: Path
) -> None:
    made = await alone.subscribe("results never stored", notifyEmail=False)
    # a real Postgres error on every attempt, after the provider answered: not its outage
    with psycopg.connect(alone.env["WHALLI_DATABASE_URL"], autocommit=True) as connection:
        connection.execute(REFUSE_RESULTS)
    worker = _worker(alone, stack_urls, unique, tmp_path, WHALLI_JOB_MAX_RETRIES="1")
    try:
        await alone.enqueue(made["id"])
        dead = await _dead_letter(alone, stack_urls.redis_url, worker)
    finally:
        worker.close()

    assert decode_job(dead.args[0]) == RunSearchSubscription(subscription_id=uuid.UUID(made["id"]))
    shown = await _search(alone, made["id"])
    assert shown["lastError"] == "The search could not be run."
    assert shown["lastErrorAt"] is not None
    assert shown["lastRunAt"] is None
    assert [r.params["q"] for r in alone.web.requests] == ["results never stored"] * 2


async def test_a_run_queued_longer_ago_than_the_age_limit_is_dropped_unrun_and_shown(
    searches: Searches, stack_urls: StackUrls, unique: str, tmp_path: Path
) -> None:
    made = await searches.subscribe("queued for too long", notifyEmail=False)
    queue = searches.env["WHALLI_QUEUE_NAME"]
    job = RunSearchSubscription(subscription_id=uuid.UUID(made["id"]))
    # a message first queued just over a day ago (its retries and delays count in its age)
    broker = create_broker(stack_urls.redis_url, namespace=queue)
    try:
        message = job_message(job, queue)
        broker.enqueue(
            message.copy(message_timestamp=message.message_timestamp - DEFAULT_MAX_AGE_MS - 1)
        )
    finally:
        broker.client.close()
    worker = _worker(searches, stack_urls, unique, tmp_path)
    try:
        dead = await _dead_letter(searches, stack_urls.redis_url, worker)
    finally:
        worker.close()

    assert decode_job(dead.args[0]) == job
    shown = await _search(searches, made["id"])
    assert shown["lastError"] == "The search waited too long to be run and was skipped."
    assert shown["lastRunAt"] is None
    assert searches.web.requests == []  # never run


async def test_a_run_whose_workers_keep_dying_is_dropped_at_the_delivery_limit_and_shown(
    searches: Searches, stack_urls: StackUrls, unique: str, tmp_path: Path
) -> None:
    made = await searches.subscribe("kills its worker", notifyEmail=False)
    searches.web.script(Answer(hold_s=60))  # the search is running when its worker dies
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = _worker(searches, stack_urls, unique, tmp_path / "first", **DYING)
    try:
        await searches.enqueue(made["id"])

        async def searching() -> bool:
            return bool(searches.web.requests)

        await eventually(searching, first)
        first.kill()
    finally:
        first.close()
    second = _worker(searches, stack_urls, unique, tmp_path / "second", **DYING)
    try:
        dead = await _dead_letter(searches, stack_urls.redis_url, second)
        assert second.terminate() == 0
    finally:
        second.close()

    assert "retries" not in dead.options  # no attempt failed: its worker died
    shown = await _search(searches, made["id"])
    assert shown["lastError"] == "The search was interrupted too many times and was skipped."
    assert shown["lastRunAt"] is None
    assert len(searches.web.requests) == 1
    assert "had 1 deliveries that never finished" in second.log()
