"""Contract of ``JobQueue``: the in-memory queue and the Dramatiq one on the real Redis.

A consumer is whatever takes jobs off the queue: ``drain`` for the fake, a plain broker consumer
(no actor, no worker) for Dramatiq.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message
from dramatiq.middleware import Middleware
from redis.asyncio import Redis

from tests.integration.contracts.conftest import lean_or_none, lean_resource, redis_resource
from whalli.adapters.dramatiq.broker import create_broker
from whalli.adapters.dramatiq.job_queue import RUN_JOB_ACTOR, DramatiqJobQueue
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.job_queue import InMemoryJobQueue
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import (
    ExtractAttachment,
    Job,
    Ping,
    RunSearchSubscription,
    TitleChat,
    TranscribeAudio,
    decode_job,
    encode_job,
)
from whalli.ports.job_queue import JobQueue

# Takes every job waiting in the queue (they are all there once ``enqueue`` returned).
Receive = Callable[[], Awaitable[list[Job]]]


def _consume(broker: RedisBroker, queue_name: str) -> list[Message[Any]]:
    consumer = broker.consume(queue_name, prefetch=100, timeout=100)
    received: list[Message[Any]] = []
    try:
        while (message := next(consumer)) is not None:
            consumer.ack(message)
            received.append(message._message)
    finally:
        consumer.close()
    return received


@pytest.fixture(params=["fake", "real", "lean"])
def backend(request: pytest.FixtureRequest) -> str:
    """Also "lean": the script sent through the lean multiplexed client, as the app does."""
    return str(request.param)


@pytest.fixture
def broker(stack_urls: StackUrls, unique: str) -> Iterator[RedisBroker]:
    namespace = f"whalli-test-{unique}"
    broker = create_broker(stack_urls.redis_url, namespace=namespace)
    yield broker
    for key in broker.client.scan_iter(match=f"{namespace}:*"):
        broker.client.delete(key)
    broker.client.close()


@pytest.fixture
def queue_name(unique: str) -> str:
    return f"jobs-{unique}"


@pytest.fixture
def queue_and_receive(
    backend: str, request: pytest.FixtureRequest, queue_name: str
) -> tuple[JobQueue, Receive]:
    if backend == "fake":
        fake = InMemoryJobQueue()

        async def drain() -> list[Job]:
            received: list[Job] = []

            async def take(job: Job) -> None:
                received.append(job)

            await fake.drain(take)
            return received

        return fake, drain

    broker: RedisBroker = request.getfixturevalue("broker")
    client: Redis = request.getfixturevalue("redis_client")

    async def consume() -> list[Job]:
        messages = await asyncio.to_thread(_consume, broker, queue_name)
        return [decode_job(m.args[0]) for m in messages]

    lean = lean_or_none(backend, request)
    return DramatiqJobQueue(broker, queue_name, client=client, lean=lean), consume


async def test_enqueued_jobs_arrive_intact_and_in_order_at_a_consumer(
    queue_and_receive: tuple[JobQueue, Receive],
) -> None:
    queue, receive = queue_and_receive
    jobs: list[Job] = [
        Ping(token="t-1"),
        ExtractAttachment(attachment_id=uuid.uuid4()),
        TranscribeAudio(transcription_id=uuid.uuid4()),
        RunSearchSubscription(subscription_id=uuid.uuid4()),
        TitleChat(chat_id=uuid.uuid4()),
    ]
    for job in jobs:
        await queue.enqueue(job)

    assert await receive() == jobs


async def test_a_job_is_delivered_once(queue_and_receive: tuple[JobQueue, Receive]) -> None:
    queue, receive = queue_and_receive
    await queue.enqueue(Ping(token="once"))

    assert await receive() == [Ping(token="once")]
    assert await receive() == []


async def test_a_dramatiq_job_is_a_message_to_the_run_job_actor_on_the_queue(
    broker: RedisBroker, queue_name: str, redis_client: Redis
) -> None:
    job = ExtractAttachment(attachment_id=uuid.uuid4())
    await DramatiqJobQueue(broker, queue_name, client=redis_client).enqueue(job)

    [message] = await asyncio.to_thread(_consume, broker, queue_name)

    assert message.actor_name == RUN_JOB_ACTOR == "whalli.run_job"
    assert message.queue_name == queue_name
    assert message.args == (encode_job(job).decode(),)
    assert message.kwargs == {}


async def test_a_delayed_dramatiq_job_waits_in_the_delay_queue_until_its_eta(
    broker: RedisBroker, queue_name: str, redis_client: Redis
) -> None:
    before_ms = int(time.time() * 1000)
    queue = DramatiqJobQueue(broker, queue_name, client=redis_client)
    await queue.enqueue(Ping(token="later"), delay_ms=60_000)

    [message] = await asyncio.to_thread(_consume, broker, f"{queue_name}.DQ")

    assert decode_job(message.args[0]) == Ping(token="later")
    assert message.options["eta"] >= before_ms + 60_000


async def test_the_same_job_enqueued_twice_is_delivered_twice(
    queue_and_receive: tuple[JobQueue, Receive],
) -> None:
    queue, receive = queue_and_receive
    await queue.enqueue(Ping(token="again"))
    await queue.enqueue(Ping(token="again"))

    assert await receive() == [Ping(token="again"), Ping(token="again")]


async def test_the_broker_middleware_sees_each_enqueue_as_the_broker_would_show_it(
    broker: RedisBroker, queue_name: str, redis_client: Redis
) -> None:
    seen: list[tuple[str, str, int | None, str]] = []

    class Record(Middleware):
        def before_enqueue(self, broker: Any, message: Any, delay: int | None) -> None:
            seen.append(("before", message.queue_name, delay, message.options["redis_message_id"]))

        def after_enqueue(self, broker: Any, message: Any, delay: int | None) -> None:
            seen.append(("after", message.queue_name, delay, message.options["redis_message_id"]))

    broker.add_middleware(Record())
    queue = DramatiqJobQueue(broker, queue_name, client=redis_client)
    await queue.enqueue(Ping(token="now"))
    await queue.enqueue(Ping(token="later"), delay_ms=5_000)

    assert [entry[:3] for entry in seen] == [
        ("before", queue_name, None),
        ("after", queue_name, None),
        ("before", f"{queue_name}.DQ", 5_000),
        ("after", f"{queue_name}.DQ", 5_000),
    ]
    ids = [entry[3] for entry in seen]
    assert ids[0] == ids[1] != ids[2] == ids[3]


async def test_the_in_memory_queue_records_the_delay() -> None:
    queue = InMemoryJobQueue()
    await queue.enqueue(Ping(token="now"))
    await queue.enqueue(Ping(token="later"), delay_ms=5_000)

    assert queue.jobs == [Ping(token="now"), Ping(token="later")]
    assert queue.delays == [0, 5_000]


async def test_an_unreachable_broker_raises_service_unavailable_without_the_password(
    closed_port: int,
) -> None:
    url = f"redis://:queue-s3cret-pw@127.0.0.1:{closed_port}/0"
    broker = create_broker(url)
    try:
        async with redis_resource(url) as client, lean_resource(url) as lean:
            for queue in (
                DramatiqJobQueue(broker, "jobs", client=client),
                DramatiqJobQueue(broker, "jobs", client=client, lean=lean),
            ):
                with pytest.raises(
                    ServiceUnavailable, match=r"^The job queue is unavailable\.$"
                ) as e:
                    await queue.enqueue(Ping(token="t"))
                assert "queue-s3cret-pw" not in str(e.value)
    finally:
        broker.client.close()


async def test_the_lean_queue_loads_the_script_again_after_redis_forgot_it(
    broker: RedisBroker, queue_name: str, redis_client: Redis, lean_redis: Any
) -> None:
    queue = DramatiqJobQueue(broker, queue_name, client=redis_client, lean=lean_redis)
    await queue.enqueue(Ping(token="before"))
    await redis_client.script_flush()  # as a restarted Redis: EVALSHA answers NOSCRIPT
    await queue.enqueue(Ping(token="after"))

    messages = await asyncio.to_thread(_consume, broker, queue_name)
    assert [decode_job(m.args[0]) for m in messages] == [Ping(token="before"), Ping(token="after")]
