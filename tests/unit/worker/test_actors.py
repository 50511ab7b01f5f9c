"""The worker's actor: a job whose service said when to try again is retried no sooner."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import ExtractAttachment, Job, encode_job
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
