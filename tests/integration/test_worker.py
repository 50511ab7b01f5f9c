"""A real worker process on the real Redis: jobs go in through ``DramatiqJobQueue``.

The worker is ``python -m whalli.entrypoints.worker.testing_main`` (Ping handled, every other job
type fails). Each test uses its own queue (and broker namespace). Waits are bounded so that a
broken worker fails the test instead of hanging it; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from redis.asyncio import Redis

from whalli.adapters.dramatiq.broker import create_broker
from whalli.adapters.dramatiq.job_queue import RUN_JOB_ACTOR, DramatiqJobQueue
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis.cache import RedisCache
from whalli.domain.model.jobs import ExtractAttachment, Ping, decode_job
from whalli.domain.services.record_ping import PONG, ping_key

ROOT = Path(__file__).resolve().parents[2]
WAIT_LIMIT_S = 60.0
MAX_RETRIES = 2


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path, args: list[str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "whalli.entrypoints.worker.testing_main", *args],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=WAIT_LIMIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit; its log:\n{self.log()}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def queue_name(unique: str) -> str:
    return f"worker-test-{unique}"


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"
    directory.mkdir()
    return directory


@pytest.fixture
def start_worker(
    stack_urls: StackUrls, queue_name: str, metrics_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHALLI_")}
    env.update(
        WHALLI_REDIS_URL=stack_urls.redis_url,
        WHALLI_QUEUE_NAME=queue_name,
        WHALLI_WORKER_THREADS="2",
        WHALLI_JOB_MAX_RETRIES=str(MAX_RETRIES),
        WHALLI_JOB_MIN_BACKOFF_MS="10",
        WHALLI_JOB_MAX_BACKOFF_MS="50",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    started: list[WorkerProcess] = []

    def start(
        *args: str, redis_url: str | None = None, settings: dict[str, str] | None = None
    ) -> WorkerProcess:
        worker_env = {**env, "WHALLI_REDIS_URL": redis_url or stack_urls.redis_url}
        worker_env.update(settings or {})
        worker = WorkerProcess(worker_env, tmp_path / f"worker-{len(started)}.log", list(args))
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
def broker(stack_urls: StackUrls, queue_name: str) -> Iterator[RedisBroker]:
    broker = create_broker(stack_urls.redis_url, namespace=queue_name)
    yield broker
    for key in broker.client.scan_iter(match=f"{queue_name}:*"):
        broker.client.delete(key)
    broker.client.close()


@pytest.fixture
def job_queue(broker: RedisBroker, queue_name: str, redis: Redis) -> DramatiqJobQueue:
    return DramatiqJobQueue(broker, queue_name, client=redis)


@pytest.fixture
async def redis(stack_urls: StackUrls) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack_urls.redis_url)
    yield client
    await client.aclose()


async def eventually(check: Callable[[], Awaitable[Any]], worker: WorkerProcess) -> Any:
    """Poll ``check`` until it returns something truthy; fail (with the log) past the limit."""
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        if result := await check():
            return result
        if worker.process.poll() is not None:
            pytest.fail(f"the worker exited early; its log:\n{worker.log()}")
        await asyncio.sleep(0.05)
    pytest.fail(f"gave up waiting; the worker's log:\n{worker.log()}")


def dead_letters(redis_url: str, queue_name: str) -> Callable[[], Awaitable[list[Message[Any]]]]:
    async def read() -> list[Message[Any]]:
        async with Redis.from_url(redis_url) as client:
            raw = await client.hvals(f"{queue_name}:{queue_name}.XQ.msgs")
        return [Message.decode(data) for data in raw]

    return read


async def test_a_ping_is_recorded_by_a_real_worker_which_then_stops_cleanly_on_sigterm(
    start_worker: Callable[..., WorkerProcess], job_queue: DramatiqJobQueue, redis: Redis
) -> None:
    worker = start_worker()
    cache = RedisCache(redis)
    token = uuid.uuid4().hex

    await job_queue.enqueue(Ping(token=token))

    assert await eventually(lambda: cache.get(ping_key(token)), worker) == PONG
    assert worker.terminate() == 0


async def test_jobs_queued_before_the_worker_starts_are_handled_once_it_runs(
    start_worker: Callable[..., WorkerProcess], job_queue: DramatiqJobQueue, redis: Redis
) -> None:
    tokens = [uuid.uuid4().hex for _ in range(5)]
    for token in tokens:
        await job_queue.enqueue(Ping(token=token))

    worker = start_worker()

    for token in tokens:
        assert await eventually(lambda t=token: RedisCache(redis).get(ping_key(t)), worker) == PONG
    assert worker.terminate() == 0


async def test_a_failing_job_is_retried_then_moved_to_the_dead_letter_queue(
    start_worker: Callable[..., WorkerProcess],
    job_queue: DramatiqJobQueue,
    stack_urls: StackUrls,
    queue_name: str,
) -> None:
    worker = start_worker()
    job = ExtractAttachment(attachment_id=uuid.uuid4())  # the testing worker has no handler

    await job_queue.enqueue(job)

    [dead] = await eventually(dead_letters(stack_urls.redis_url, queue_name), worker)
    assert decode_job(dead.args[0]) == job
    # The dead letter is the message as last queued: after its MAX_RETRIES-th retry.
    assert dead.options["retries"] == MAX_RETRIES
    assert "No handler for jobs of type ExtractAttachment" in dead.options["traceback"]
    assert worker.terminate() == 0


async def test_a_payload_that_does_not_decode_is_dropped_not_retried(
    start_worker: Callable[..., WorkerProcess],
    broker: RedisBroker,
    job_queue: DramatiqJobQueue,
    redis: Redis,
    queue_name: str,
) -> None:
    worker = start_worker()
    garbage = Message(
        queue_name=queue_name,
        actor_name=RUN_JOB_ACTOR,
        args=('{"type":"nope"}',),
        kwargs={},
        options={},
    )
    await asyncio.to_thread(broker.enqueue, garbage)
    await job_queue.enqueue(Ping(token="after-garbage"))
    await eventually(lambda: RedisCache(redis).get(ping_key("after-garbage")), worker)

    async def nothing_left() -> bool:
        sizes = [
            await redis.hlen(f"{queue_name}:{queue_name}{suffix}")
            for suffix in (".msgs", ".DQ.msgs", ".XQ.msgs")
        ]
        return sizes == [0, 0, 0]

    # A retried message would sit in the delay queue, a dead one in the dead-letter queue.
    await eventually(nothing_left, worker)
    assert worker.terminate() == 0
    assert "Dropping a job payload that does not decode" in worker.log()


async def test_the_worker_counts_processed_and_failed_messages_in_multiprocess_metrics(
    start_worker: Callable[..., WorkerProcess],
    job_queue: DramatiqJobQueue,
    stack_urls: StackUrls,
    queue_name: str,
    redis: Redis,
    metrics_dir: Path,
) -> None:
    worker = start_worker()
    await job_queue.enqueue(Ping(token="metered"))
    await job_queue.enqueue(ExtractAttachment(attachment_id=uuid.uuid4()))
    await eventually(lambda: RedisCache(redis).get(ping_key("metered")), worker)
    await eventually(dead_letters(stack_urls.redis_url, queue_name), worker)
    assert worker.terminate() == 0

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    labels = {"queue_name": queue_name, "actor_name": RUN_JOB_ACTOR}

    def sample(name: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("whalli_worker_messages_processed_total") == 1 + MAX_RETRIES + 1
    assert sample("whalli_worker_messages_failed_total") == MAX_RETRIES + 1
    assert sample("whalli_worker_messages_retried_total") == MAX_RETRIES
    assert sample("whalli_worker_messages_dead_lettered_total") == 1
    assert sample("whalli_worker_message_duration_seconds_count") == 1 + MAX_RETRIES + 1
    # The worker marked itself dead on shutdown, so it no longer adds to the live gauge.
    assert sample("whalli_worker_messages_in_progress") is None


async def test_a_message_whose_worker_keeps_dying_is_dead_lettered_after_the_delivery_limit(
    start_worker: Callable[..., WorkerProcess],
    job_queue: DramatiqJobQueue,
    stack_urls: StackUrls,
    queue_name: str,
    redis: Redis,
) -> None:
    # Slow pings, so the first worker is surely running one when it is killed; dead workers are
    # noticed after two seconds without a heartbeat; maintenance runs on every broker command.
    options = [
        "--ping-delay-s",
        "300",
        "--heartbeat-timeout-ms",
        "2000",
        "--maintenance-chance",
        "1000000",
        "--max-deliveries",
        "1",
    ]
    first = start_worker(*options)
    await job_queue.enqueue(Ping(token="deadly"))

    async def running() -> list[bytes]:
        return [key async for key in redis.scan_iter(match=f"{queue_name}:__deliveries__.*")]

    await eventually(running, first)
    first.process.send_signal(signal.SIGKILL)
    first.wait()

    second = start_worker(*options)
    [dead] = await eventually(dead_letters(stack_urls.redis_url, queue_name), second)

    assert decode_job(dead.args[0]) == Ping(token="deadly")
    assert "retries" not in dead.options  # it never failed: its workers died
    assert await RedisCache(redis).get(ping_key("deadly")) is None
    assert second.terminate() == 0
    assert "had 1 deliveries that never finished" in second.log()


async def test_a_job_running_past_the_time_limit_is_interrupted_retried_then_dead_lettered(
    start_worker: Callable[..., WorkerProcess],
    job_queue: DramatiqJobQueue,
    stack_urls: StackUrls,
    queue_name: str,
    redis: Redis,
) -> None:
    worker = start_worker("--ping-delay-s", "300", "--time-limit-ms", "200")

    await job_queue.enqueue(Ping(token="slow"))

    [dead] = await eventually(dead_letters(stack_urls.redis_url, queue_name), worker)
    assert decode_job(dead.args[0]) == Ping(token="slow")
    assert "TimeLimitExceeded" in dead.options["traceback"]
    assert await RedisCache(redis).get(ping_key("slow")) is None
    assert worker.terminate() == 0


def test_a_worker_whose_resources_cannot_start_exits_with_an_error(
    start_worker: Callable[..., WorkerProcess], closed_port: int
) -> None:
    worker = start_worker(redis_url=f"redis://:worker-s3cret@127.0.0.1:{closed_port}/0")

    assert worker.wait() == 1
    assert "The worker could not start" in worker.log()
    assert "worker-s3cret" not in worker.log()


async def test_the_worker_serves_its_metrics_behind_the_metrics_token(
    start_worker: Callable[..., WorkerProcess],
    job_queue: DramatiqJobQueue,
    redis: Redis,
    queue_name: str,
    closed_port: int,
) -> None:
    worker = start_worker(
        settings={
            "WHALLI_WORKER_METRICS_PORT": str(closed_port),
            "WHALLI_METRICS_TOKEN": "scrape-me",
        }
    )
    token = f"scraped-{uuid.uuid4().hex}"  # (a fixed one is already there from an earlier run)
    await job_queue.enqueue(Ping(token=token))
    await eventually(lambda: RedisCache(redis).get(ping_key(token)), worker)
    url = f"http://127.0.0.1:{closed_port}/metrics"
    labels = f'actor_name="{RUN_JOB_ACTOR}",queue_name="{queue_name}"'

    async def scraped() -> str | None:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.get(url, headers={"Authorization": "Bearer scrape-me"})
        assert answer.status_code == 200, answer.text
        return (
            answer.text
            if f"whalli_worker_messages_processed_total{{{labels}}} 1.0" in (answer.text)
            else None
        )

    body = await eventually(scraped, worker)
    assert "whalli_worker_message_duration_seconds_count" in body
    async with httpx.AsyncClient(timeout=10) as client:
        refused = await client.get(url)
        wrong = await client.get(url, headers={"Authorization": "Bearer nope"})
        elsewhere = await client.get(url.replace("/metrics", "/"))
    assert (refused.status_code, wrong.status_code, elsewhere.status_code) == (401, 401, 404)
    assert "whalli_worker" not in refused.text + wrong.text
    assert worker.terminate() == 0


def test_a_worker_whose_metrics_port_is_taken_does_not_start(
    start_worker: Callable[..., WorkerProcess],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        worker = start_worker(settings={"WHALLI_WORKER_METRICS_PORT": port})
        assert worker.wait() == 1
    assert "metrics could not be served" in worker.log()
