"""Hunt S26 (jobs), unit part: the ``AbandonedJobs`` middleware on a real Dramatiq worker with
several threads (Dramatiq's stub broker: no Redis needed), and the seven credential ends
(``AccessChanges.ended``) with the credential versions out of reach.

One defect found and fixed: the middleware kept each attempt's start by message id, which a
retry shares with the attempt before it. A retry taken by a second worker thread while the
first thread still ran its after-hooks (a slow hook: ``DeliveryLimit``'s Redis round trip on a
blinking Redis) had its start taken by the first thread, so its own abandonment was told as
beginning when it ended: a search's own reason for its last attempt (recorded during it) then
looked older than the attempt and was overwritten."""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO, CurrentMessage, Middleware, Retries

from tests.unit.services.test_auth import Auth
from tests.unit.services.test_credential_ends_noted import ENDINGS, SlowCommit
from whalli.adapters.dramatiq.abandoned import AbandonedJobs
from whalli.adapters.memory.credential_versions import InMemoryCredentialVersions
from whalli.adapters.memory.store import MemoryStore
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import ExtractAttachment, Job, JobAbandoned, encode_job
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.credential_ends import CredentialEnds
from whalli.entrypoints.worker.actors import register

WAIT_S = 60.0  # a bound on waits, so a broken worker fails the test instead of hanging it


class _OnFirstAfter(Middleware):
    """Runs ``action`` in the after-hook of the first message processed (its first attempt)."""

    def __init__(self, action: Any) -> None:
        self._action = action
        self._done = False

    def after_process_message(self, broker: Any, message: Any, **kwargs: Any) -> None:
        if not self._done:
            self._done = True
            self._action()


@pytest.fixture
def stopped_afterwards() -> Iterator[list[dramatiq.Worker]]:
    workers: list[dramatiq.Worker] = []
    yield workers
    for worker in workers:
        worker.stop()


def test_a_retry_taken_by_another_thread_before_its_first_attempt_ended_keeps_its_own_start(
    stopped_afterwards: list[dramatiq.Worker],
) -> None:
    first_ended = threading.Event()  # the first attempt's thread ran all its after-hooks
    second_began = threading.Event()
    told: list[JobAbandoned] = []
    was_told = threading.Event()
    began: list[datetime] = []  # when each attempt's job began to run

    async def on_abandoned(abandoned: JobAbandoned) -> None:
        told.append(abandoned)
        was_told.set()

    async def dispatch(job: Job) -> None:
        began.append(datetime.now(UTC))
        if len(began) == 2:  # the retry, on the other thread: the first one still in its hooks
            second_began.set()
            assert await asyncio.to_thread(first_ended.wait, WAIT_S)
        raise ServiceUnavailable("The search provider answered HTTP 503.")

    # In the broker's order (after-hooks run last to first): the attempt's start noted first;
    # the first attempt's hooks after Retries (which queued the retry) held until the retry
    # began on the other thread, as a slow hook would; ``first_ended`` once they all ran.
    broker = StubBroker(  # type: ignore[no-untyped-call]
        middleware=[
            _OnFirstAfter(first_ended.set),
            AbandonedJobs(on_abandoned),
            _OnFirstAfter(lambda: second_began.wait(WAIT_S)),
            Retries(max_retries=1, min_backoff=1, max_backoff=1),
            AsyncIO(),
            CurrentMessage(),
        ]
    )
    job = ExtractAttachment(attachment_id=uuid.uuid4())
    actor = register(broker, dispatch, queue_name="jobs")
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=10)
    stopped_afterwards.append(worker)
    worker.start()

    actor.send(encode_job(job).decode())

    assert was_told.wait(WAIT_S)
    [abandoned] = told
    assert (abandoned.job, abandoned.cause) == (job, "failed")
    first, second = began
    # the last attempt's own start (noted before its job began), not the first's or its end
    assert first < abandoned.since <= second


@pytest.mark.parametrize(
    "args", [(), ("not a job", "extra"), ('{"type": "no_such_job"}', 1)], ids=["none", "two", "tag"]
)
def test_a_message_given_up_whose_payload_does_not_decode_is_told_to_nobody_and_the_next_is(
    stopped_afterwards: list[dramatiq.Worker], args: tuple[Any, ...]
) -> None:
    told: list[JobAbandoned] = []
    was_told = threading.Event()

    async def on_abandoned(abandoned: JobAbandoned) -> None:
        told.append(abandoned)
        was_told.set()

    async def dispatch(job: Job) -> None:
        raise RuntimeError("a bug")

    broker = StubBroker(  # type: ignore[no-untyped-call]
        middleware=[
            AbandonedJobs(on_abandoned),
            Retries(max_retries=0),
            AsyncIO(),
            CurrentMessage(),
        ]
    )
    job = ExtractAttachment(attachment_id=uuid.uuid4())
    actor = register(broker, dispatch, queue_name="jobs")
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=10)
    stopped_afterwards.append(worker)
    worker.start()

    actor.send(*args)  # fails for good (the actor cannot take these arguments)
    actor.send(encode_job(job).decode())

    assert was_told.wait(WAIT_S)
    broker.join("jobs", fail_fast=False)
    assert [(a.job, a.cause) for a in told] == [(job, "failed")]
    assert len(broker.dead_letters) == 2


class _Down(InMemoryCredentialVersions):
    """Credential versions out of reach (Redis down), counting the bumps tried."""

    tried = 0

    async def bump(self, user_id: uuid.UUID) -> None:
        self.tried += 1
        raise ServiceUnavailable("redis: connection failed")


class _Watched(SlowCommit):
    """The ending's unit of work: the store as it was when the ending's use case began."""

    def __init__(self, store: MemoryStore, auth: Auth) -> None:
        super().__init__(store, auth.clock)
        self._watched = store
        self.before: dict[str, Any] | None = None

    async def __aenter__(self) -> _Watched:
        if self.before is None:
            self.before = copy.deepcopy(self._watched.tables)
        await super().__aenter__()
        return self


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_with_versions_out_of_reach_an_end_is_refused_unsaved_unnoted_but_a_reuse_still_ends(
    ending: str,
) -> None:
    auth = Auth()
    user, _pair = await auth.register()
    ends, uow, versions = CredentialEnds(), _Watched(auth.store, auth), _Down()
    access = AccessChanges(versions, ends=ends, clock=auth.clock)
    before_ending = auth.clock.now()

    if ending == "refresh token reused":  # the revocation of a stolen family cannot wait
        await ENDINGS[ending](auth, user, uow, access)  # RefreshTokenReused, as ever
        assert ends.ended_since(user.id, before_ending)  # noted here at once
        assert versions.tried == 3  # told, or tried to: after the commit (logged)
        assert auth.store.tables != uow.before
        return
    with pytest.raises(ServiceUnavailable, match="redis: connection failed"):
        await ENDINGS[ending](auth, user, uow, access)

    assert uow.before is not None
    assert auth.store.tables == uow.before  # nothing saved
    assert not ends.ended_since(user.id, before_ending)  # no end noted: none happened
    assert versions.tried == 3  # the bump before the commit, with its retries
