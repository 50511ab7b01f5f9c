"""Hunt S26 (jobs), on the real Redis and Postgres: the job queue through the lean multiplexed
Redis client (many enqueues at once, a Redis that restarts or misbehaves mid-enqueue), and a
search run the queue gave up on, recorded while a run of the same search succeeds.

One defect found and fixed: a search run read its clock before it held the search's row, so a
run that succeeded while the queue's give-up was being recorded (its row lock waited for) could
commit with a time older than the failure's, which its success then did not clear: the search
showed "could not be run" after a run that stored its results. The run now holds the row
before it reads the clock, as the record of a give-up does. (The ``AbandonedJobs`` defect of
this hunt is in ``tests/unit/services/test_s26_hunt_jobs_unit.py``.)"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message
from dramatiq.middleware import Middleware
from redis.asyncio import Redis

from tests.integration.conftest import pool_resource
from tests.integration.entities import a_membership, a_project, a_subscription, a_user
from tests.integration.test_resp_hunt import BROKEN, Handler, serve
from whalli.adapters.dramatiq.broker import create_broker
from whalli.adapters.dramatiq.job_queue import DramatiqJobQueue, job_message
from whalli.adapters.memory.web_search import InMemoryWebSearch
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.resp import RespClient
from whalli.adapters.system.clock import SystemClock
from whalli.adapters.system.ids import UuidGenerator
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import Ping, RunSearchSubscription, decode_job
from whalli.domain.model.projects import MemberRole
from whalli.domain.model.searches import SearchHit, SearchSubscription
from whalli.domain.services.searches.record_abandoned_run import (
    RecordAbandonedRun,
    RecordAbandonedRunHandler,
)
from whalli.domain.services.searches.run_search import RunSearchHandler
from whalli.ports.clock import Clock

redis_resource = asynccontextmanager(create_redis)
WAIT_S = 60.0  # a bound on waits, so a broken run fails the test instead of hanging it


# --- the job queue on the lean client ------------------------------------------------------


class _Seen(Middleware):
    """The enqueues the broker's middleware is told of, as (hook, job token)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def before_enqueue(self, broker: Any, message: Any, delay: int | None) -> None:
        self.seen.append(("before", _token(message)))

    def after_enqueue(self, broker: Any, message: Any, delay: int | None) -> None:
        self.seen.append(("after", _token(message)))


def _token(message: Any) -> str:
    job = decode_job(message.args[0])
    assert isinstance(job, Ping)
    return job.token


@pytest.fixture
def broker(stack_urls: Any, unique: str) -> Iterator[RedisBroker]:
    namespace = f"whalli-s26-{unique}"
    broker = create_broker(stack_urls.redis_url, namespace=namespace)
    yield broker
    for key in broker.client.scan_iter(match=f"{namespace}:*"):
        broker.client.delete(key)
    broker.client.close()


@pytest.fixture
async def redis(stack_urls: Any) -> AsyncIterator[Redis]:
    async with redis_resource(stack_urls.redis_url) as client:
        yield client


@pytest.fixture
async def lean(stack_urls: Any) -> AsyncIterator[RespClient]:
    client = RespClient(stack_urls.redis_url, command_timeout=30.0)  # a busy shared machine
    try:
        yield client
    finally:
        await client.aclose()


def _queued(broker: RedisBroker, queue_name: str) -> list[Message[Any]]:
    """The messages waiting in ``queue_name``, in queue order, read as a worker's consumer."""
    consumer = broker.consume(queue_name, prefetch=1000, timeout=100)
    taken: list[Message[Any]] = []
    try:
        while (message := next(consumer)) is not None:
            consumer.ack(message)
            taken.append(message._message)
    finally:
        consumer.close()
    return taken


async def _tokens(broker: RedisBroker, queue_name: str) -> list[str]:
    return [_token(m) for m in await asyncio.to_thread(_queued, broker, queue_name)]


@pytest.mark.parametrize("script", ["loaded", "forgotten"])
async def test_enqueues_at_once_on_the_one_lean_connection_arrive_once_each_beside_other_answers(
    broker: RedisBroker, redis: Redis, lean: RespClient, unique: str, script: str
) -> None:
    queue_name = f"jobs-{unique}"
    queue = DramatiqJobQueue(broker, queue_name, client=redis, lean=lean)
    await queue.enqueue(Ping(token="first"))  # the connection open, the script loaded
    if script == "forgotten":  # as after a restart: every enqueue in flight answers NOSCRIPT
        await redis.script_flush()
    tokens = [f"t-{i}" for i in range(300)]

    async def echo(i: int) -> bytes:
        answer: bytes = await lean.execute("ECHO", f"echo-{i}")
        return answer

    answers = await asyncio.gather(
        *(step for i, t in enumerate(tokens) for step in (queue.enqueue(Ping(token=t)), echo(i)))
    )

    assert answers[1::2] == [f"echo-{i}".encode() for i in range(len(tokens))]
    assert answers[0::2] == [None] * len(tokens)
    arrived = await _tokens(broker, queue_name)
    assert arrived[0] == "first"
    if script == "loaded":  # written in call order on the one connection: queued so
        assert arrived[1:] == tokens
    else:
        assert sorted(arrived[1:]) == sorted(tokens)


async def test_a_job_through_the_lean_client_is_queued_as_the_broker_queues_it(
    broker: RedisBroker, redis: Redis, lean: RespClient, unique: str
) -> None:
    queue_name = f"jobs-{unique}"
    queue = DramatiqJobQueue(broker, queue_name, client=redis, lean=lean)
    for token, delay_ms in (("now", 0), ("later", 60_000)):
        before_ms = int(time.time() * 1000)
        await queue.enqueue(Ping(token=f"lean-{token}"), delay_ms=delay_ms)
        own = job_message(Ping(token=f"broker-{token}"), queue_name)
        await asyncio.to_thread(broker.enqueue, own, delay=delay_ms or None)

        name = f"{queue_name}.DQ" if delay_ms else queue_name
        lean_one, broker_one = await asyncio.to_thread(_queued, broker, name)
        assert decode_job(lean_one.args[0]) == Ping(token=f"lean-{token}")
        for field in ("queue_name", "actor_name", "kwargs"):
            assert getattr(lean_one, field) == getattr(broker_one, field)
        assert lean_one.options.keys() == broker_one.options.keys()
        assert lean_one.message_id != broker_one.message_id
        ids = {m.options["redis_message_id"] for m in (lean_one, broker_one)}
        assert len(ids) == 2
        if delay_ms:
            assert lean_one.options["eta"] >= before_ms + delay_ms


class _Relay:
    """A TCP relay on loopback to a server; ``cut`` closes every connection through it, as a
    Redis restart does (the relay itself keeps listening, as the restarted Redis)."""

    def __init__(self) -> None:
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []

    def cut(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()


@asynccontextmanager
async def _relay(host: str, port: int) -> AsyncIterator[_Relay]:
    relay = _Relay()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def connect(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, port)
        relay._writers.extend((client_w, server_w))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    server = await asyncio.start_server(connect, "127.0.0.1", 0)
    relay.port = server.sockets[0].getsockname()[1]
    try:
        yield relay
    finally:
        server.close()
        relay.cut()


async def test_a_redis_restart_fails_only_the_enqueues_it_cut_and_the_next_reconnects_and_loads(
    broker: RedisBroker, redis: Redis, stack_urls: Any, unique: str
) -> None:
    queue_name = f"jobs-{unique}"
    url = urlsplit(stack_urls.redis_url)
    assert url.hostname is not None
    assert url.port is not None
    userinfo, _, _ = url.netloc.rpartition("@")
    async with _relay(url.hostname, url.port) as relay:
        address = f"127.0.0.1:{relay.port}"
        relayed = urlunsplit(url._replace(netloc=f"{userinfo}@{address}" if userinfo else address))
        lean = RespClient(relayed, command_timeout=30.0)
        try:
            queue = DramatiqJobQueue(broker, queue_name, client=redis, lean=lean)
            await queue.enqueue(Ping(token="before"))
            relay.cut()  # the restart: the connection cut, the scripts gone
            await redis.script_flush()
            landed = ["before"]
            for token in ("after-1", "after-2", "after-3"):
                try:
                    await queue.enqueue(Ping(token=token))
                    landed.append(token)
                except ServiceUnavailable:  # the one written on the cut connection, if any
                    pass
        finally:
            await lean.aclose()

    assert landed[-2:] == ["after-2", "after-3"]  # a new connection, the script loaded again
    assert await _tokens(broker, queue_name) == landed  # each reported queued, none else


@pytest.mark.parametrize("kind", [k for k, handler in BROKEN.items() if handler is not None])
async def test_a_redis_misbehaving_mid_enqueue_is_unavailable_and_the_enqueue_is_not_told_done(
    broker: RedisBroker, redis: Redis, kind: str
) -> None:
    handler: Handler | None = BROKEN[kind]
    assert handler is not None
    seen = _Seen()
    broker.add_middleware(seen)
    async with serve(handler) as fake:
        lean = RespClient(fake.url, connect_timeout=1.0, command_timeout=0.5)
        try:
            queue = DramatiqJobQueue(broker, "jobs", client=redis, lean=lean)
            with pytest.raises(ServiceUnavailable, match=r"^The job queue is unavailable\.$"):
                await queue.enqueue(Ping(token="lost"))
        finally:
            await lean.aclose()
        assert fake.connections >= 1  # it reached the server: the failure was mid-enqueue

    assert seen.seen == [("before", "lost")]  # as the broker: no after_enqueue for a failure


# --- a give-up recorded while a run of the same search succeeds ----------------------------


async def _runnable_search(pool: PostgresPool) -> SearchSubscription:
    owner = a_user()
    project = a_project(owner)
    search = a_subscription(project, owner)
    async with PostgresUnitOfWork(pool) as uow:
        await uow.users.add(owner)
        await uow.projects.add(project)
        await uow.projects.add_member(a_membership(project, owner, MemberRole.OWNER))
        await uow.searches.add(search)
        await uow.commit()
    return search


def _run_elsewhere(url: str, search: SearchSubscription, failed: list[BaseException]) -> None:
    """A run of ``search`` that finds one result, in its own thread, loop and pool: another
    worker thread of the worker's, or another worker."""

    async def run() -> None:
        web = InMemoryWebSearch(
            {search.query: [SearchHit(url="https://example.com/new", title="New")]}
        )
        async with pool_resource(url, min_size=1, max_size=2) as pool:
            uow = PostgresUnitOfWork(pool)
            handler = RunSearchHandler(uow, web, SystemClock(), UuidGenerator())
            await handler.execute(RunSearchSubscription(subscription_id=search.id))

    try:
        asyncio.run(run())
    except BaseException as e:  # told to the test
        failed.append(e)


def _a_search_statement_waits_for_a_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND cardinality(pg_blocking_pids(pid)) > 0 AND query ILIKE %s",
            ("%search_subscriptions%",),
        ).fetchone()
    return row is not None and row[0] > 0


class _RunMeanwhile(Clock):
    """The give-up's clock. Read once the give-up holds the search's row: it starts a run of
    the search then, and tells the time once that run waits for the row (or ended)."""

    def __init__(self, url: str, search: SearchSubscription) -> None:
        self.failed: list[BaseException] = []
        self.waited = False  # the run waited for the row the give-up held
        self.thread = threading.Thread(target=_run_elsewhere, args=(url, search, self.failed))
        self._url = url

    def now(self) -> datetime:
        if not self.thread.is_alive() and self.thread.ident is None:
            self.thread.start()
            deadline = time.monotonic() + WAIT_S
            while self.thread.is_alive():
                if _a_search_statement_waits_for_a_lock(self._url):
                    self.waited = True
                    break
                assert time.monotonic() < deadline, "the run neither waited nor ended"
                time.sleep(0.01)
        return datetime.now(UTC)


async def test_a_run_that_succeeds_while_a_give_up_is_recorded_is_the_searchs_last_word(
    pg_pool: PostgresPool, migrated_database_url: str
) -> None:
    search = await _runnable_search(pg_pool)
    clock = _RunMeanwhile(migrated_database_url, search)
    give_up = RecordAbandonedRun(
        subscription_id=search.id, cause="expired", since=datetime.now(UTC) - timedelta(days=1)
    )

    await RecordAbandonedRunHandler(PostgresUnitOfWork(pg_pool), clock).execute(give_up)
    await asyncio.to_thread(clock.thread.join, WAIT_S)

    assert not clock.thread.is_alive()
    assert clock.failed == []
    assert clock.waited  # the run began while the give-up held the row, and waited for it
    async with PostgresUnitOfWork(pg_pool) as uow:
        shown = await uow.searches.get(search.id)
        stored = await uow.searches.list_results(search.id)
    assert [r.url for r in stored] == ["https://example.com/new"]  # the run committed last
    assert shown.last_run_at is not None
    assert (shown.last_error, shown.last_error_at) == (None, None)
