"""A search run the queue gave up on, recorded on the in-memory unit of work: its reason by
cause, and nothing where the search already tells a newer outcome or would not run."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.memory.web_search import InMemoryWebSearch
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.jobs import AbandonCause, RunSearchSubscription
from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.domain.model.searches import SearchHit, SearchSubscription
from whalli.domain.model.users import User
from whalli.domain.services.searches.create_search import CreateSearch, CreateSearchHandler
from whalli.domain.services.searches.record_abandoned_run import (
    RecordAbandonedRun,
    RecordAbandonedRunHandler,
)
from whalli.domain.services.searches.run_search import RunSearchHandler
from whalli.domain.services.searches.update_search import UpdateSearch, UpdateSearchHandler

QUERY = "abandoned runs"


@dataclass
class World:
    store: MemoryStore
    clock: ManualClock
    web: InMemoryWebSearch
    owner: User
    search: SearchSubscription

    async def abandon(self, cause: AbandonCause = "failed", since: datetime | None = None) -> None:
        command = RecordAbandonedRun(
            subscription_id=self.search.id, cause=cause, since=since or self.clock.now()
        )
        await RecordAbandonedRunHandler(InMemoryUnitOfWork(self.store), self.clock).execute(command)

    async def run(self, *, last_attempt: bool = True) -> None:
        handler = RunSearchHandler(
            InMemoryUnitOfWork(self.store), self.web, self.clock, SequentialIds()
        )
        job = RunSearchSubscription(subscription_id=self.search.id, last_attempt=last_attempt)
        await handler.execute(job)

    async def stored(self) -> SearchSubscription:
        async with InMemoryUnitOfWork(self.store) as uow:
            return await uow.searches.get(self.search.id)


@pytest.fixture
async def world() -> World:
    store, clock = MemoryStore(), ManualClock()
    owner = User.create(id=uuid.uuid4(), email="ada@example.com", now=clock.now())
    project = Project.create(id=uuid.uuid4(), name="Research", owner_id=owner.id, now=clock.now())
    async with InMemoryUnitOfWork(store) as uow:
        await uow.users.add(owner)
        await uow.projects.add(project)
        owns = Membership(project_id=project.id, user_id=owner.id, role=MemberRole.OWNER,
                          created_at=clock.now())  # fmt: skip
        await uow.projects.add_member(owns)
        await uow.commit()
    create = CreateSearchHandler(InMemoryUnitOfWork(store), clock, SequentialIds(), enabled=True)
    search = await create.execute(
        CreateSearch(user_id=owner.id, project_id=project.id, query=QUERY, interval_minutes=60)
    )
    web = InMemoryWebSearch({QUERY: [SearchHit(url="https://example.com/1", title="One")]})
    return World(store, clock, web, owner, search)


@pytest.mark.parametrize(
    ("cause", "told"),
    [
        ("failed", "The search could not be run."),
        ("expired", "The search waited too long to be run and was skipped."),
        ("interrupted", "The search was interrupted too many times and was skipped."),
    ],
)
async def test_a_run_given_up_is_the_searchs_last_error_by_its_cause(
    world: World, cause: AbandonCause, told: str
) -> None:
    queued = world.clock.now()
    world.clock.advance(timedelta(minutes=1))

    await world.abandon(cause, since=queued)

    stored = await world.stored()
    assert (stored.last_error, stored.last_error_at) == (told, world.clock.now())
    assert stored.last_run_at is None


async def test_the_jobs_own_reason_for_its_last_attempt_stays(world: World) -> None:
    started = world.clock.now()
    world.web.unavailable = True
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await world.run(last_attempt=True)  # records the provider's outage itself
    world.clock.advance(timedelta(seconds=1))

    await world.abandon("failed", since=started)

    assert (await world.stored()).last_error == (
        "The search provider could not be reached or did not answer in time."
    )


async def test_a_run_stored_before_the_job_failed_shows_no_error(world: World) -> None:
    started = world.clock.now()
    await world.run()  # stored; then, say, the job ran out of time sending its email
    world.clock.advance(timedelta(seconds=1))

    await world.abandon("failed", since=started)

    stored = await world.stored()
    assert (stored.last_run_at, stored.last_error) == (started, None)


async def test_an_outcome_older_than_the_abandoned_attempt_is_replaced(world: World) -> None:
    await world.run()
    world.clock.advance(timedelta(hours=1))
    started = world.clock.now()
    world.clock.advance(timedelta(seconds=1))

    await world.abandon("failed", since=started)

    stored = await world.stored()
    assert (stored.last_error, stored.last_error_at) == (
        "The search could not be run.",
        world.clock.now(),
    )


async def test_a_paused_search_records_nothing(world: World) -> None:
    update = UpdateSearchHandler(InMemoryUnitOfWork(world.store), world.clock)
    await update.execute(
        UpdateSearch(user_id=world.owner.id, subscription_id=world.search.id, active=False)
    )

    await world.abandon("expired")

    assert (await world.stored()).last_error is None
