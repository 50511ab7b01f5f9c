from __future__ import annotations

import msgspec
import pytest

from whalli.adapters.memory.job_queue import InMemoryJobQueue
from whalli.domain.model.jobs import Job, Ping


async def test_draining_runs_jobs_in_order_including_those_enqueued_meanwhile() -> None:
    queue = InMemoryJobQueue()
    await queue.enqueue(Ping(token="1"))
    await queue.enqueue(Ping(token="2"))
    seen: list[Job] = []

    async def handle(job: Job) -> None:
        seen.append(job)
        if job == Ping(token="1"):
            await queue.enqueue(Ping(token="3"))

    assert await queue.drain(handle) == 3
    assert seen == [Ping(token="1"), Ping(token="2"), Ping(token="3")]
    assert queue.jobs == []


async def test_a_job_whose_handler_fails_stays_queued() -> None:
    queue = InMemoryJobQueue()
    await queue.enqueue(Ping(token="1"))
    await queue.enqueue(Ping(token="2"))

    async def fail(job: Job) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await queue.drain(fail)

    assert queue.jobs == [Ping(token="1"), Ping(token="2")]


async def test_a_job_that_is_not_part_of_the_job_union_cannot_be_queued() -> None:
    class Unknown(Job, tag="unknown"):
        pass

    with pytest.raises(msgspec.ValidationError, match="Invalid value 'unknown'"):
        await InMemoryJobQueue().enqueue(Unknown())
