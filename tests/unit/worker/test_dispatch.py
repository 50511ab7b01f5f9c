from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from whalli.domain.model.jobs import ExtractAttachment, Job, JobAbandoned, Ping
from whalli.entrypoints.worker.dispatch import JobDispatcher, NoHandlerForJob


async def test_each_job_goes_to_the_handler_of_its_type() -> None:
    seen: list[tuple[str, Job]] = []

    async def on_ping(job: Ping) -> None:
        seen.append(("ping", job))

    async def on_extract(job: ExtractAttachment) -> None:
        seen.append(("extract", job))

    dispatcher = JobDispatcher({Ping: on_ping, ExtractAttachment: on_extract})
    extract = ExtractAttachment(attachment_id=uuid.uuid4())

    await dispatcher.dispatch(Ping(token="t"))
    await dispatcher(extract)

    assert seen == [("ping", Ping(token="t")), ("extract", extract)]


async def test_a_job_type_without_a_handler_is_an_error() -> None:
    async def on_ping(job: Ping) -> None:
        pass

    dispatcher = JobDispatcher({Ping: on_ping})

    with pytest.raises(NoHandlerForJob, match="No handler for jobs of type ExtractAttachment"):
        await dispatcher.dispatch(ExtractAttachment(attachment_id=uuid.uuid4()))


async def test_handler_errors_propagate_so_the_broker_can_retry() -> None:
    async def on_ping(job: Ping) -> None:
        raise RuntimeError("cache down")

    with pytest.raises(RuntimeError, match="cache down"):
        await JobDispatcher({Ping: on_ping}).dispatch(Ping(token="t"))


def test_only_job_types_can_have_handlers() -> None:
    async def handler(job: object) -> None:
        pass

    with pytest.raises(TypeError, match="is not a job type"):
        JobDispatcher({str: handler})


async def test_a_job_given_up_is_told_to_its_types_handler_and_to_nobody_for_other_types() -> None:
    told: list[JobAbandoned] = []

    async def on_ping(job: Ping) -> None:
        pass

    async def on_ping_abandoned(abandoned: JobAbandoned) -> None:
        told.append(abandoned)

    dispatcher = JobDispatcher({Ping: on_ping}, {Ping: on_ping_abandoned})
    now = datetime.now(UTC)
    ping = JobAbandoned(job=Ping(token="t"), cause="expired", since=now)
    other = JobAbandoned(
        job=ExtractAttachment(attachment_id=uuid.uuid4()), cause="failed", since=now
    )

    await dispatcher.abandoned(ping)
    await dispatcher.abandoned(other)

    assert told == [ping]
