"""Recurring searches on the in-memory unit of work: who may create, read, change and delete a
subscription, the cap of active ones, pages of subscriptions and results, the scheduler's
claim, and a run's results, notification and email (once, even when the job is redelivered)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.email_sender import InMemoryEmailSender
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.job_queue import InMemoryJobQueue
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.memory.web_search import InMemoryWebSearch
from whalli.domain.model.errors import (
    InvalidInput,
    InvalidSchedule,
    PermissionDenied,
    ProjectNotFound,
    ProviderError,
    SearchesNotConfigured,
    SearchLimitReached,
    SearchSubscriptionNotFound,
    ServiceUnavailable,
    WhalliError,
)
from whalli.domain.model.jobs import Job, RunSearchSubscription
from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.domain.model.searches import (
    MAX_ACTIVE_SUBSCRIPTIONS,
    UNQUEUED_RUN,
    SearchHit,
    SearchSubscription,
    run_failure,
)
from whalli.domain.model.users import User
from whalli.domain.services.projects.remove_member import RemoveMember, RemoveMemberHandler
from whalli.domain.services.searches.create_search import CreateSearch, CreateSearchHandler
from whalli.domain.services.searches.delete_search import DeleteSearch, DeleteSearchHandler
from whalli.domain.services.searches.get_search import GetSearch, GetSearchHandler
from whalli.domain.services.searches.list_search_results import (
    ListSearchResults,
    ListSearchResultsHandler,
)
from whalli.domain.services.searches.list_searches import ListSearches, ListSearchesHandler
from whalli.domain.services.searches.run_search import RunSearchHandler
from whalli.domain.services.searches.schedule_due import ScheduleDueSearches
from whalli.domain.services.searches.update_search import UpdateSearch, UpdateSearchHandler
from whalli.ports.web_search import WebSearch

QUERY = "postgres release notes"
HITS = [SearchHit(url=f"https://example.com/{n}", title=f"Release {n}") for n in range(3)]


class RefusingSearch(WebSearch):
    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        raise ProviderError("The search provider brave refused the request (HTTP 401).")


@dataclass
class World:
    store: MemoryStore
    clock: ManualClock
    ids: SequentialIds
    owner: User
    project: Project
    web: InMemoryWebSearch
    email: InMemoryEmailSender

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    async def user(self, role: MemberRole | None = None) -> User:
        user = User.create(id=uuid.uuid4(), email=f"{uuid.uuid4().hex}@example.com",
                           now=self.clock.now())  # fmt: skip
        async with self.uow() as uow:
            await uow.users.add(user)
            if role is not None:
                member = Membership(project_id=self.project.id, user_id=user.id, role=role,
                                    created_at=self.clock.now())  # fmt: skip
                await uow.projects.add_member(member)
            await uow.commit()
        return user

    async def create(self, user: User | None = None, **fields: Any) -> SearchSubscription:
        handler = CreateSearchHandler(self.uow(), self.clock, self.ids, enabled=True)
        command = dict(user_id=(user or self.owner).id, project_id=self.project.id,
                       query=QUERY, interval_minutes=60) | fields  # fmt: skip
        return await handler.execute(CreateSearch(**command))

    def runner(self, search: WebSearch | None = None, **kw: Any) -> RunSearchHandler:
        return RunSearchHandler(self.uow(), search or self.web, self.clock, self.ids,
                                email=kw.get("email", self.email),
                                root_path=kw.get("root_path", ""))  # fmt: skip

    async def run(self, subscription: SearchSubscription, **kw: Any) -> None:
        await self.runner(**kw).execute(RunSearchSubscription(subscription_id=subscription.id))

    async def results(self, subscription: SearchSubscription) -> list[str]:
        async with self.uow() as uow:
            return [r.url for r in await uow.searches.list_results(subscription.id)]

    async def notifications(self, user: User | None = None) -> list[Any]:
        async with self.uow() as uow:
            return await uow.notifications.list_for_user((user or self.owner).id)


@pytest.fixture
async def world() -> World:
    store, clock = MemoryStore(), ManualClock()
    owner = User.create(id=uuid.uuid4(), email="ada@example.com", email_verified=True,
                        now=clock.now())  # fmt: skip
    project = Project.create(id=uuid.uuid4(), name="Research", owner_id=owner.id, now=clock.now())
    async with InMemoryUnitOfWork(store) as uow:
        await uow.users.add(owner)
        await uow.projects.add(project)
        owns = Membership(project_id=project.id, user_id=owner.id, role=MemberRole.OWNER,
                          created_at=clock.now())  # fmt: skip
        await uow.projects.add_member(owns)
        await uow.commit()
    web = InMemoryWebSearch({QUERY: HITS})
    return World(store, clock, SequentialIds(), owner, project, web, InMemoryEmailSender())


async def test_a_subscription_is_created_due_at_once_in_the_project(world: World) -> None:
    made = await world.create(query="  postgres   release notes ", notify_email=False)

    assert (made.query, made.project_id, made.user_id) == (QUERY, world.project.id, world.owner.id)
    assert (made.next_run_at, made.active, made.notify_email) == (world.clock.now(), True, False)
    async with world.uow() as uow:
        assert await uow.searches.get(made.id) == made


async def test_with_no_search_provider_nothing_is_created(world: World) -> None:
    handler = CreateSearchHandler(world.uow(), world.clock, world.ids, enabled=False)
    command = CreateSearch(user_id=world.owner.id, project_id=None, query=QUERY,
                           interval_minutes=60)  # fmt: skip
    with pytest.raises(SearchesNotConfigured, match="not configured on this server"):
        await handler.execute(command)
    async with world.uow() as uow:
        assert await uow.searches.count_active_for_user(world.owner.id) == 0


async def test_a_viewer_may_not_create_and_a_stranger_is_told_the_project_does_not_exist(
    world: World,
) -> None:
    viewer, stranger = await world.user(MemberRole.VIEWER), await world.user()

    with pytest.raises(PermissionDenied, match="write access needed"):
        await world.create(viewer)
    with pytest.raises(ProjectNotFound, match="Project not found"):
        await world.create(stranger)


async def test_bad_queries_and_intervals_are_refused(world: World) -> None:
    with pytest.raises(InvalidInput, match="1 to 400 characters"):
        await world.create(query="   ")
    with pytest.raises(InvalidSchedule, match="between 15 minutes and 31 days"):
        await world.create(interval_minutes=5)


async def test_a_user_has_at_most_the_cap_of_active_subscriptions_paused_ones_aside(
    world: World,
) -> None:
    made = [await world.create() for _ in range(MAX_ACTIVE_SUBSCRIPTIONS)]
    with pytest.raises(SearchLimitReached, match="at most 20 active"):
        await world.create()

    update = UpdateSearchHandler(world.uow(), world.clock)
    await update.execute(UpdateSearch(user_id=world.owner.id, subscription_id=made[0].id,
                                      active=False))  # fmt: skip
    extra = await world.create()
    with pytest.raises(SearchLimitReached, match="at most 20 active"):
        await update.execute(UpdateSearch(user_id=world.owner.id, subscription_id=made[0].id,
                                          active=True))  # fmt: skip
    assert extra.active


async def test_members_read_subscriptions_and_strangers_get_not_found(world: World) -> None:
    made = await world.create()
    viewer, stranger = await world.user(MemberRole.VIEWER), await world.user()
    get = GetSearchHandler(world.uow())

    assert await get.execute(GetSearch(user_id=viewer.id, subscription_id=made.id)) == made
    with pytest.raises(SearchSubscriptionNotFound, match="Search subscription not found"):
        await get.execute(GetSearch(user_id=stranger.id, subscription_id=made.id))
    results = ListSearchResultsHandler(world.uow())
    with pytest.raises(SearchSubscriptionNotFound, match="Search subscription not found"):
        await results.execute(ListSearchResults(user_id=stranger.id, subscription_id=made.id))
    with pytest.raises(ProjectNotFound, match="Project not found"):
        await ListSearchesHandler(world.uow()).execute(
            ListSearches(user_id=stranger.id, project_id=world.project.id)
        )


async def test_a_viewer_may_neither_change_nor_delete_and_a_stranger_gets_not_found(
    world: World,
) -> None:
    made = await world.create()
    viewer, stranger = await world.user(MemberRole.VIEWER), await world.user()
    update, delete = UpdateSearchHandler(world.uow(), world.clock), DeleteSearchHandler(world.uow())

    with pytest.raises(PermissionDenied, match="write access needed"):
        await update.execute(UpdateSearch(user_id=viewer.id, subscription_id=made.id))
    with pytest.raises(PermissionDenied, match="write access needed"):
        await delete.execute(DeleteSearch(user_id=viewer.id, subscription_id=made.id))
    with pytest.raises(SearchSubscriptionNotFound, match="Search subscription not found"):
        await delete.execute(DeleteSearch(user_id=stranger.id, subscription_id=made.id))
    await delete.execute(DeleteSearch(user_id=world.owner.id, subscription_id=made.id))
    async with world.uow() as uow:
        with pytest.raises(SearchSubscriptionNotFound, match="not found"):
            await uow.searches.get(made.id)


async def test_a_new_query_is_due_at_once_and_a_new_interval_counts_from_the_last_run(
    world: World,
) -> None:
    made = await world.create()
    async with world.uow() as uow:
        await uow.searches.claim_due(world.clock.now())
        await uow.commit()
    ran_at = world.clock.now()
    world.clock.advance(timedelta(minutes=10))
    update = UpdateSearchHandler(world.uow(), world.clock)

    change = UpdateSearch(user_id=world.owner.id, subscription_id=made.id, interval_minutes=120,
                          notify_email=False)  # fmt: skip
    slower = await update.execute(change)
    assert (slower.next_run_at, slower.notify_email) == (ran_at + timedelta(minutes=120), False)
    requery = await update.execute(UpdateSearch(user_id=world.owner.id, subscription_id=made.id,
                                                query="pgvector news"))  # fmt: skip
    assert (requery.query, requery.next_run_at) == ("pgvector news", world.clock.now())


async def test_subscriptions_and_results_page_newest_first_without_repeats(world: World) -> None:
    made = []
    for _ in range(5):
        made.append(await world.create())
        world.clock.advance(timedelta(seconds=1))
    handler = ListSearchesHandler(world.uow())
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await handler.execute(ListSearches(user_id=world.owner.id, limit=2, cursor=cursor,
                                                  project_id=world.project.id))  # fmt: skip
        seen += [s.id for s in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [s.id for s in reversed(made)]
    with pytest.raises(InvalidInput, match="cursor is not valid"):
        await handler.execute(ListSearches(user_id=world.owner.id, cursor="nope"))

    await world.run(made[0])
    results = ListSearchResultsHandler(world.uow())
    first = await results.execute(
        ListSearchResults(user_id=world.owner.id, subscription_id=made[0].id, limit=2)
    )
    assert first.next_cursor is not None
    rest = await results.execute(ListSearchResults(user_id=world.owner.id, limit=2,
                                                   subscription_id=made[0].id,
                                                   cursor=first.next_cursor))  # fmt: skip
    urls = [r.url for r in first.items + rest.items]
    assert sorted(urls) == sorted(h.url for h in HITS)
    assert rest.next_cursor is None


async def test_a_run_stores_results_and_notifies_once_in_app_and_by_email(world: World) -> None:
    made = await world.create()

    await world.run(made)

    assert sorted(await world.results(made)) == sorted(h.url for h in HITS)
    [notification] = await world.notifications()
    assert notification.title == f"3 new results for {QUERY}"
    assert notification.link == f"/api/searches/{made.id}/results"
    assert notification.kind == "search_results"
    [email] = world.email.outbox
    assert (email.to, email.subject) == ("ada@example.com", f"3 new results for {QUERY}")
    for hit in HITS:
        assert hit.url in email.text
        assert hit.title in email.text


@pytest.mark.parametrize(("root_path", "prefix"), [("", ""), ("/whalli", "/whalli"), ("/w/", "/w")])
async def test_the_email_names_the_api_path_under_its_root_path(
    world: World, root_path: str, prefix: str
) -> None:
    made = await world.create()

    await world.run(made, root_path=root_path)

    [email] = world.email.outbox
    assert f'PATCH {prefix}/api/searches/{made.id} {{"notifyEmail": false}}' in email.text
    [notification] = await world.notifications()  # stored without it; prefixed when read
    assert notification.link == f"/api/searches/{made.id}/results"


async def test_a_redelivered_run_stores_nothing_twice_and_notifies_nothing_more(
    world: World,
) -> None:
    made = await world.create()
    await world.run(made)

    await world.run(made)

    assert len(await world.results(made)) == 3
    assert len(await world.notifications()) == 1
    assert len(world.email.outbox) == 1


async def test_only_new_results_are_notified_on_a_later_run(world: World) -> None:
    made = await world.create()
    await world.run(made)
    world.clock.advance(timedelta(hours=1))
    world.web.set_hits(QUERY, [*HITS, SearchHit(url="https://example.com/new", title="New!")])

    await world.run(made)

    newest = (await world.notifications())[0]
    assert newest.title == f"1 new result for {QUERY}"
    assert "New!" in newest.body
    assert "https://example.com/new" in world.email.outbox[-1].text
    assert "https://example.com/0" not in world.email.outbox[-1].text


async def test_without_notify_email_or_an_email_sender_only_the_in_app_notification_comes(
    world: World,
) -> None:
    quiet = await world.create(notify_email=False)
    await world.run(quiet)
    other = await world.create(query="other")
    world.web.set_hits("other", HITS)
    await world.run(other, email=None)

    assert len(await world.notifications()) == 2
    assert world.email.outbox == []


async def test_an_email_that_fails_loses_no_result_nor_notification(world: World) -> None:
    made = await world.create()
    world.email.unavailable = True

    await world.run(made)

    assert len(await world.results(made)) == 3
    assert len(await world.notifications()) == 1


async def test_a_provider_outage_propagates_for_the_queue_and_a_refusal_ends_the_run(
    world: World,
) -> None:
    made = await world.create()
    world.web.unavailable = True
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await world.run(made)

    await world.run(made, search=RefusingSearch())

    assert await world.results(made) == []
    assert await world.notifications() == []


async def test_paused_deleted_or_orphaned_subscriptions_do_nothing(world: World) -> None:
    editor = await world.user(MemberRole.EDITOR)
    paused = await world.create()
    await UpdateSearchHandler(world.uow(), world.clock).execute(
        UpdateSearch(user_id=world.owner.id, subscription_id=paused.id, active=False)
    )
    left = await world.create(editor)
    async with world.uow() as uow:
        await uow.projects.remove_member(world.project.id, editor.id)
        await uow.commit()
    gone = await world.create()
    await DeleteSearchHandler(world.uow()).execute(
        DeleteSearch(user_id=world.owner.id, subscription_id=gone.id)
    )
    disabled_user = await world.user(MemberRole.EDITOR)
    disabled = await world.create(disabled_user)
    async with world.uow() as uow:
        disabled_user.disabled = True
        await uow.users.update(disabled_user)
        await uow.commit()

    for subscription in (paused, left, gone, disabled):
        await world.run(subscription)

    assert world.web.queries == []
    assert await world.notifications() == []
    assert await world.notifications(editor) == []
    assert await world.notifications(disabled_user) == []


async def test_the_scheduler_queues_each_due_subscription_once_and_moves_its_next_run(
    world: World,
) -> None:
    due = await world.create()
    later = await world.create()
    await UpdateSearchHandler(world.uow(), world.clock).execute(
        UpdateSearch(user_id=world.owner.id, subscription_id=later.id, active=False)
    )
    queue = InMemoryJobQueue()
    scheduler = ScheduleDueSearches(world.uow(), queue, world.clock)

    assert await scheduler.execute() == 1
    assert await scheduler.execute() == 0

    assert queue.jobs == [RunSearchSubscription(subscription_id=due.id)]
    async with world.uow() as uow:
        stored = await uow.searches.get(due.id)
    assert (stored.claimed_at, stored.last_run_at) == (world.clock.now(), None)
    assert stored.next_run_at == world.clock.now() + timedelta(minutes=60)
    world.clock.advance(timedelta(minutes=60))
    assert await scheduler.execute() == 1


class BrokerDown(InMemoryJobQueue):
    """A queue whose broker refuses the runs of ``down`` (as the Dramatiq queue does when
    Redis is unreachable: ``ServiceUnavailable``, nothing queued)."""

    def __init__(self, down: set[uuid.UUID]) -> None:
        super().__init__()
        self.down = down

    async def enqueue(self, job: Job, *, delay_ms: int = 0) -> None:
        if isinstance(job, RunSearchSubscription) and job.subscription_id in self.down:
            raise ServiceUnavailable("The job queue is unreachable.")
        await super().enqueue(job, delay_ms=delay_ms)


async def test_a_run_the_scheduler_could_not_queue_shows_as_the_searchs_last_error(
    world: World,
) -> None:
    refused, queued = await world.create(), await world.create()
    queue = BrokerDown({refused.id})
    scheduler = ScheduleDueSearches(world.uow(), queue, world.clock)

    assert await scheduler.execute() == 1
    assert queue.jobs == [RunSearchSubscription(subscription_id=queued.id)]
    async with world.uow() as uow:
        not_run, run = await uow.searches.get(refused.id), await uow.searches.get(queued.id)
    assert (not_run.last_error, not_run.last_error_at) == (UNQUEUED_RUN, world.clock.now())
    assert not_run.next_run_at == world.clock.now() + timedelta(minutes=60)  # claimed, skipped
    assert (run.last_error, run.last_error_at) == (None, None)
    # the next interval queues it; its run clears the error
    world.clock.advance(timedelta(minutes=60))
    queue.down.clear()
    assert await scheduler.execute() == 2
    await world.run(not_run)
    async with world.uow() as uow:
        assert (await uow.searches.get(refused.id)).last_error is None


@pytest.mark.parametrize("minutes", [10**15, -(10**15), 14, 31 * 24 * 60 + 1])
async def test_an_interval_out_of_bounds_is_refused_however_large_it_is(
    world: World, minutes: int
) -> None:
    made = await world.create()
    update = UpdateSearchHandler(world.uow(), world.clock)

    with pytest.raises(InvalidSchedule, match="between 15 minutes and 31 days"):
        await world.create(interval_minutes=minutes)
    with pytest.raises(InvalidSchedule, match="between 15 minutes and 31 days"):
        await update.execute(UpdateSearch(user_id=world.owner.id, subscription_id=made.id,
                                          interval_minutes=minutes))  # fmt: skip
    assert (await world.create(interval_minutes=31 * 24 * 60)).interval_minutes == 44640


async def test_its_creator_made_viewer_may_stop_their_search_but_change_nothing_else(
    world: World,
) -> None:
    bob, other_viewer = await world.user(MemberRole.EDITOR), await world.user(MemberRole.VIEWER)
    made = await world.create(bob)
    async with world.uow() as uow:
        await uow.projects.update_member(Membership(project_id=world.project.id, user_id=bob.id,
                                                    role=MemberRole.VIEWER,
                                                    created_at=world.clock.now()))  # fmt: skip
        await uow.commit()
    update, delete = UpdateSearchHandler(world.uow(), world.clock), DeleteSearchHandler(world.uow())

    def change(user: User, **fields: Any) -> UpdateSearch:
        return UpdateSearch(user_id=user.id, subscription_id=made.id, **fields)

    for fields in ({"query": "other"}, {"interval_minutes": 30}, {"notify_email": True},
                   {"active": True}, {"active": False, "query": "other"}):  # fmt: skip
        with pytest.raises(PermissionDenied, match="write access needed"):
            await update.execute(change(bob, **fields))
    with pytest.raises(PermissionDenied, match="write access needed"):
        await update.execute(change(other_viewer, active=False))
    with pytest.raises(PermissionDenied, match="write access needed"):
        await delete.execute(DeleteSearch(user_id=other_viewer.id, subscription_id=made.id))

    quiet = await update.execute(change(bob, notify_email=False))
    paused = await update.execute(change(bob, active=False, notify_email=False))
    assert (quiet.notify_email, quiet.active, paused.active) == (False, True, False)
    await delete.execute(DeleteSearch(user_id=bob.id, subscription_id=made.id))
    async with world.uow() as uow:
        with pytest.raises(SearchSubscriptionNotFound, match="not found"):
            await uow.searches.get(made.id)


async def test_a_run_already_due_stays_due_when_the_interval_changes(world: World) -> None:
    made = await world.create()
    async with world.uow() as uow:
        await uow.searches.claim_due(world.clock.now())
        await uow.commit()
    world.clock.advance(timedelta(minutes=10))
    update = UpdateSearchHandler(world.uow(), world.clock)

    requery = await update.execute(UpdateSearch(user_id=world.owner.id, subscription_id=made.id,
                                                query="pgvector news"))  # fmt: skip
    world.clock.advance(timedelta(seconds=5))
    slower = await update.execute(UpdateSearch(user_id=world.owner.id, subscription_id=made.id,
                                               interval_minutes=120))  # fmt: skip

    assert slower.next_run_at == requery.next_run_at  # the new query has not run yet
    world.clock.advance(timedelta(hours=3))  # overdue: a new interval keeps it due too
    faster = await update.execute(UpdateSearch(user_id=world.owner.id, subscription_id=made.id,
                                               interval_minutes=60))  # fmt: skip
    assert faster.next_run_at == requery.next_run_at


async def test_an_unverified_address_gets_the_in_app_notification_but_no_email(
    world: World,
) -> None:
    unverified = await world.user(MemberRole.EDITOR)
    assert not unverified.email_verified
    made = await world.create(unverified, notify_email=True)

    await world.run(made)

    [notification] = await world.notifications(unverified)
    assert notification.title == f"3 new results for {QUERY}"
    assert world.email.outbox == []


async def test_a_runs_results_list_best_first_newest_run_first(world: World) -> None:
    ranked = [SearchHit(url=f"https://rank.example/{n}", title=f"Rank {n}") for n in range(5)]
    world.web.set_hits(QUERY, ranked)
    made = await world.create()
    await world.run(made)
    world.clock.advance(timedelta(hours=1))
    later = [SearchHit(url=f"https://later.example/{n}", title=f"Later {n}") for n in range(2)]
    world.web.set_hits(QUERY, [*later, *ranked])
    await world.run(made)
    handler = ListSearchResultsHandler(world.uow())

    seen: list[str] = []
    cursor = None
    while True:
        ask = ListSearchResults(user_id=world.owner.id, subscription_id=made.id, limit=2,
                                cursor=cursor)  # fmt: skip
        page = await handler.execute(ask)
        seen += [r.title for r in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [h.title for h in later + ranked]
    [newest, first] = await world.notifications()
    assert newest.body.splitlines() == [h.title for h in later]
    assert first.body.splitlines() == [h.title for h in ranked]


async def test_the_scheduler_claims_batch_after_batch_until_one_is_short_at_most_so_many(
    world: World,
) -> None:
    made = [await world.create() for _ in range(7)]
    queue = InMemoryJobQueue()
    scheduler = ScheduleDueSearches(world.uow(), queue, world.clock, batch=2, max_batches=3)

    assert await scheduler.execute() == 6  # three full batches: the tick's bound
    assert await scheduler.execute() == 1  # the rest, one short batch
    assert await scheduler.execute() == 0
    assert len(queue.jobs) == 7
    assert set(queue.jobs) == {RunSearchSubscription(subscription_id=s.id) for s in made}


async def test_a_member_removed_or_leaving_has_their_searches_there_paused_only(
    world: World,
) -> None:
    bob, carol = await world.user(MemberRole.EDITOR), await world.user(MemberRole.EDITOR)
    elsewhere = Project.create(id=uuid.uuid4(), name="Bob's", owner_id=bob.id,
                               now=world.clock.now())  # fmt: skip
    async with world.uow() as uow:
        await uow.projects.add(elsewhere)
        await uow.projects.add_member(Membership(project_id=elsewhere.id, user_id=bob.id,
                                                 role=MemberRole.OWNER,
                                                 created_at=world.clock.now()))  # fmt: skip
        await uow.commit()
    bobs = await world.create(bob)
    kept = await world.create(bob, project_id=elsewhere.id)
    carols, owners = await world.create(carol), await world.create()
    world.clock.advance(timedelta(minutes=1))
    remove = RemoveMemberHandler(world.uow(), world.clock)

    await remove.execute(RemoveMember(user_id=world.owner.id, project_id=world.project.id,
                                      member_id=bob.id))  # fmt: skip
    await remove.execute(RemoveMember(user_id=carol.id, project_id=world.project.id,
                                      member_id=carol.id))  # fmt: skip

    async with world.uow() as uow:
        stored = {s.id: s for s in [await uow.searches.get(x.id)
                                    for x in (bobs, kept, carols, owners)]}  # fmt: skip
        assert await uow.searches.count_active_for_user(bob.id) == 1
    assert [stored[x.id].active for x in (bobs, kept, carols, owners)] == [
        False, True, False, True]  # fmt: skip
    assert stored[bobs.id].updated_at == world.clock.now()


@pytest.mark.parametrize(
    ("error", "told"),
    [
        (ProviderError("key sk-1 refused", kind="refused", upstream_status=401),
         "The search provider refused the search (HTTP 401)."),
        (ProviderError("no results list", kind="protocol"),
         "The search provider answered without results."),
        (ServiceUnavailable("answered HTTP 429", upstream_status=429, retry_after=5),
         "The search provider is limiting searches (HTTP 429)."),
        (ServiceUnavailable("answered HTTP 502", upstream_status=502),
         "The search provider failed (HTTP 502)."),
        (ServiceUnavailable("did not answer in time"),
         "The search provider could not be reached or did not answer in time."),
    ],
)  # fmt: skip
def test_a_failed_run_is_told_by_its_kind_never_by_the_errors_message(
    error: WhalliError, told: str
) -> None:
    assert run_failure(error) == told


async def test_a_refused_run_records_its_failure_and_the_next_run_clears_it(world: World) -> None:
    made = await world.create()
    failed_at = world.clock.now()
    await world.run(made, search=RefusingSearch())
    async with world.uow() as uow:
        failed = await uow.searches.get(made.id)
    world.clock.advance(timedelta(minutes=1))
    await world.run(made)
    async with world.uow() as uow:
        ran = await uow.searches.get(made.id)

    assert (failed.last_run_at, failed.last_error_at) == (None, failed_at)
    assert failed.last_error == "The search provider refused the search."
    assert (ran.last_run_at, ran.last_error, ran.last_error_at) == (world.clock.now(), None, None)


async def _failure(world: World, made: SearchSubscription) -> tuple[str | None, Any]:
    async with world.uow() as uow:
        found = await uow.searches.get(made.id)
    return found.last_error, found.last_error_at


async def test_an_outage_the_queue_will_retry_records_no_error_until_its_last_attempt(
    world: World,
) -> None:
    made = await world.create()
    world.web.unavailable = True
    runner = world.runner()
    retried = RunSearchSubscription(subscription_id=made.id, last_attempt=False)
    with pytest.raises(ServiceUnavailable, match="unavailable"):  # still propagates: retried
        await runner.execute(retried)
    before_last = await _failure(world, made)
    world.clock.advance(timedelta(minutes=1))
    given_up = RunSearchSubscription(subscription_id=made.id, last_attempt=True)
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await runner.execute(given_up)

    assert before_last == (None, None)
    assert await _failure(world, made) == (
        "The search provider could not be reached or did not answer in time.",
        world.clock.now(),
    )
    assert await world.results(made) == []


async def test_a_refusal_is_recorded_at_once_even_when_the_queue_could_retry_the_job(
    world: World,
) -> None:
    made = await world.create()
    job = RunSearchSubscription(subscription_id=made.id, last_attempt=False)

    await world.runner(RefusingSearch()).execute(job)  # not raised: never retried

    assert await _failure(world, made) == (
        "The search provider refused the search.",
        world.clock.now(),
    )


async def test_a_retried_outage_leaves_the_last_error_of_an_earlier_run_as_it_was(
    world: World,
) -> None:
    made = await world.create()
    await world.run(made, search=RefusingSearch())
    refused = await _failure(world, made)
    world.clock.advance(timedelta(minutes=1))
    world.web.unavailable = True
    retried = RunSearchSubscription(subscription_id=made.id, last_attempt=False)
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await world.runner().execute(retried)

    assert await _failure(world, made) == refused


def test_a_search_job_is_its_last_attempt_unless_told_otherwise() -> None:
    assert RunSearchSubscription(subscription_id=uuid.uuid4()).last_attempt is True
