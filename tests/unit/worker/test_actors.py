"""The worker's actor: a job whose service said when to try again is retried no sooner; a search
job is told whether the queue will retry it if it fails (its ``last_attempt``)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, Retries

from whalli.adapters.dramatiq.attempts import is_last_attempt
from whalli.adapters.dramatiq.broker import create_broker
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import ExtractAttachment, Job, RunSearchSubscription, encode_job
from whalli.entrypoints.worker.actors import MAX_RETRY_AFTER_MS, register

JOB = ExtractAttachment(attachment_id=uuid.uuid4())


def failing(error: Exception) -> Callable[[Job], Awaitable[None]]:
    async def dispatch(job: Job) -> None:
        raise error

    return dispatch


async def run(error: Exception, **options: Any) -> None:
    broker = StubBroker()  # type: ignore[no-untyped-call]
    actor = register(broker, failing(error), queue_name="jobs", **options)
    await actor.fn.__wrapped__(encode_job(JOB).decode())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("retry_after", "floor_ms", "delay_ms"),
    [(2.0, 10, 2000), (0.0101, 10, 11), (0, 100, 100), (86_400, 10, MAX_RETRY_AFTER_MS)],
    ids=["as-asked", "rounded-up", "at-least-the-backoff", "at-most-an-hour"],
)
async def test_an_error_saying_when_to_retry_is_retried_no_sooner(
    retry_after: float, floor_ms: int, delay_ms: int
) -> None:
    error = ServiceUnavailable("The provider answered HTTP 503.", retry_after=retry_after)

    with pytest.raises(dramatiq.Retry, match="service_unavailable") as caught:
        await run(error, min_retry_delay_ms=floor_ms)

    assert caught.value.delay == delay_ms
    assert caught.value.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [ServiceUnavailable("down"), ServiceUnavailable("down", retry_after=None), RuntimeError("bug")],
    ids=["no-retry-after", "none", "not-whalli"],
)
async def test_other_errors_propagate_for_the_queues_own_backoff(error: Exception) -> None:
    with pytest.raises(type(error), match=r"down|bug"):
        await run(error, min_retry_delay_ms=100)


def run_on_a_worker(broker: StubBroker, job: Job, *, fails: int) -> list[bool]:
    """Run ``job`` on a real Dramatiq worker of ``broker``, its dispatch failing ``fails`` times
    with an outage (which the queue retries); the ``last_attempt`` of each attempt."""
    seen: list[bool] = []

    async def dispatch(job: Job) -> None:
        seen.append(getattr(job, "last_attempt", None))
        if len(seen) <= fails:
            raise ServiceUnavailable("The search provider answered HTTP 503.")

    actor = register(broker, dispatch, queue_name="jobs")
    worker = dramatiq.Worker(broker, worker_timeout=10)
    worker.start()
    try:
        actor.send(encode_job(job).decode())
        broker.join("jobs", fail_fast=False)
        worker.join()
    finally:
        worker.stop()
    return seen


def retrying_broker(max_retries: int) -> StubBroker:
    middleware = [
        CurrentMessage(), Retries(max_retries=max_retries, min_backoff=1, max_backoff=1), AsyncIO()
    ]  # fmt: skip
    broker = StubBroker(middleware=middleware)  # type: ignore[no-untyped-call]
    broker.emit_after("process_boot")
    return broker


SEARCH = RunSearchSubscription(subscription_id=uuid.uuid4())


@pytest.mark.parametrize(
    ("max_retries", "fails", "told"),
    [(2, 5, [False, False, True]), (2, 1, [False, False]), (0, 1, [True])],
    ids=["given-up", "retry-succeeds", "no-retries"],
)
def test_a_search_job_is_told_whether_the_queue_will_retry_it_if_it_fails(
    max_retries: int, fails: int, told: list[bool]
) -> None:
    broker = retrying_broker(max_retries)
    try:
        assert run_on_a_worker(broker, SEARCH, fails=fails) == told
    finally:
        broker.close()


async def test_a_search_job_run_outside_a_worker_is_its_last_attempt() -> None:
    seen: list[Job] = []

    async def dispatch(job: Job) -> None:
        seen.append(job)

    actor = register(retrying_broker(3), dispatch, queue_name="jobs")
    await actor.fn.__wrapped__(encode_job(SEARCH).decode())  # type: ignore[attr-defined]

    assert seen == [SEARCH]
    assert b"last_attempt" not in encode_job(SEARCH)  # never sent: the worker decides


def test_the_production_broker_tells_actors_their_message() -> None:
    broker = create_broker("redis://127.0.0.1:9")
    try:
        assert any(isinstance(m, CurrentMessage) for m in broker.middleware)
        assert is_last_attempt(broker, None)
    finally:
        broker.close()
