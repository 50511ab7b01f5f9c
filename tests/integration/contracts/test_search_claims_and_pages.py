"""Contract of the scheduler's claim, the pages of subscriptions and results, and the unread
notifications, in memory and on Postgres.

``claim_due`` takes every due subscription in the database: the tests that call it place theirs
in year 2 (``list_due``'s tests use year 1, and every other test today's dates) and delete them
at the end, so a claim here never takes another test's rows nor leaves any behind."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from whalli.domain.model.searches import SearchSubscription

from ..conftest import UowFactory
from ..entities import a_notification, a_result, a_subscription, at, committed_world

YEAR_2 = datetime(2, 1, 1, tzinfo=UTC)
CLAIM_AT = YEAR_2 + timedelta(days=10)


@pytest.fixture
async def due(uow_factory: UowFactory) -> AsyncIterator[list[SearchSubscription]]:
    """Three committed subscriptions due at ``CLAIM_AT`` (the most overdue first), a paused one
    and one not due yet; deleted afterwards."""
    world = await committed_world(uow_factory())
    made = [a_subscription(world.project, world.user, now=YEAR_2 + timedelta(days=d))
            for d in (1, 2, 3, 4)]  # fmt: skip
    made[3].active = False
    later = a_subscription(world.project, world.user, now=CLAIM_AT + timedelta(minutes=1))
    async with uow_factory() as uow:
        for subscription in (*made, later):
            await uow.searches.add(subscription)
        await uow.commit()
    yield made[:3]
    async with uow_factory() as uow:
        for subscription in (*made, later):
            await uow.searches.delete(subscription.id)
        await uow.commit()


async def test_a_claim_takes_the_due_subscriptions_most_overdue_first_and_moves_their_runs(
    uow_factory: UowFactory, due: list[SearchSubscription]
) -> None:
    async with uow_factory() as uow:
        first = await uow.searches.claim_due(CLAIM_AT, limit=2)
        rest = await uow.searches.claim_due(CLAIM_AT)
        await uow.commit()

    assert [s.id for s in first] == [due[0].id, due[1].id]
    assert [s.id for s in rest] == [due[2].id]
    async with uow_factory() as uow:
        for subscription in due:
            stored = await uow.searches.get(subscription.id)
            assert (stored.claimed_at, stored.last_run_at) == (CLAIM_AT, None)
            assert stored.next_run_at == CLAIM_AT + timedelta(minutes=60)
            assert stored in first + rest
        assert await uow.searches.claim_due(CLAIM_AT) == []


async def test_a_claim_skips_what_another_open_claim_holds_and_a_rolled_back_one_frees_it(
    uow_factory: UowFactory, due: list[SearchSubscription]
) -> None:
    async with uow_factory() as holder:
        held = await holder.searches.claim_due(CLAIM_AT, limit=1)
        async with uow_factory() as other:
            taken = await other.searches.claim_due(CLAIM_AT)
            await other.commit()
    # the holder rolled back: its subscription is due again
    async with uow_factory() as uow:
        again = await uow.searches.claim_due(CLAIM_AT)
        await uow.commit()

    assert [s.id for s in held] == [due[0].id]
    assert [s.id for s in taken] == [due[1].id, due[2].id]
    assert [s.id for s in again] == [due[0].id]


async def test_a_claim_skips_a_subscription_a_change_holds_and_takes_it_once_released(
    uow_factory: UowFactory, due: list[SearchSubscription]
) -> None:
    async with uow_factory() as changing:
        held = await changing.searches.get_for_update(due[0].id)
        async with uow_factory() as other:
            taken = await other.searches.claim_due(CLAIM_AT)
            await other.commit()
        held.interval_minutes = 120
        await changing.searches.update(held)
        await changing.commit()
    async with uow_factory() as uow:
        later = await uow.searches.claim_due(CLAIM_AT)
        await uow.commit()

    assert [s.id for s in taken] == [due[1].id, due[2].id]
    [claimed] = later
    assert (claimed.id, claimed.claimed_at) == (due[0].id, CLAIM_AT)
    assert claimed.next_run_at == CLAIM_AT + timedelta(minutes=120)  # with the change


async def test_claims_at_the_same_moment_take_each_subscription_once(
    uow_factory: UowFactory, due: list[SearchSubscription]
) -> None:
    async def claim() -> list[uuid.UUID]:
        async with uow_factory() as uow:
            found = await uow.searches.claim_due(CLAIM_AT)
            await asyncio.sleep(0)  # let the other claim run while this one holds its rows
            await uow.commit()
        return [s.id for s in found]

    claims = await asyncio.gather(*(claim() for _ in range(4)))

    taken = [i for claimed in claims for i in claimed]
    assert sorted(taken) == sorted(s.id for s in due)


async def test_a_projects_subscriptions_page_newest_first_and_active_ones_are_counted(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    made = [a_subscription(world.project, world.user, now=at(n)) for n in range(4)]
    made[0].active = False
    async with uow_factory() as uow:
        for subscription in made:
            await uow.searches.add(subscription)

        first = await uow.searches.list_for_project(world.project.id, limit=2)
        last = first[-1]
        rest = await uow.searches.list_for_project(
            world.project.id, before=(last.created_at, last.id)
        )
        assert first + rest == made[::-1]
        assert await uow.searches.count_active_for_user(world.user.id) == 3
        assert await uow.searches.list_for_project(uuid.uuid4()) == []


async def test_results_page_from_a_cursor(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    subscription = a_subscription(world.project, world.user)
    results = [a_result(subscription, f"https://example.org/{n}", found_at=at(n)) for n in range(4)]
    async with uow_factory() as uow:
        await uow.searches.add(subscription)
        await uow.searches.add_results(results)

        before = (results[2].found_at, results[2].id)
        assert await uow.searches.list_results(subscription.id, before=before) == results[1::-1]


async def test_unread_notifications_are_counted_paged_and_all_marked_read(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    notes = [a_notification(world.user, now=at(n)) for n in range(4)]
    notes[1].mark_read(at(10))
    async with uow_factory() as uow:
        for note in notes:
            await uow.notifications.add(note)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.notifications.count_unread(world.user.id) == 3
        before = (notes[3].created_at, notes[3].id)
        assert await uow.notifications.list_for_user(
            world.user.id, unread_only=True, before=before
        ) == [notes[2], notes[0]]
        assert await uow.notifications.mark_all_read(world.user.id, at(20)) == 3
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.notifications.count_unread(world.user.id) == 0
        stored = await uow.notifications.list_for_user(world.user.id)
        assert [n.read_at for n in stored] == [at(20), at(20), at(10), at(20)]


async def test_one_runs_results_page_best_first_by_rank_from_a_cursor(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    subscription = a_subscription(world.project, world.user)
    # ids in no particular order: within a run (one found_at) the rank alone orders them
    older = [
        a_result(subscription, f"https://example.org/old/{n}", found_at=at(1)) for n in range(2)
    ]
    run = [
        msgspec.structs.replace(
            a_result(subscription, f"https://example.org/{n}", found_at=at(2)), rank=n
        )
        for n in range(4)
    ]
    async with uow_factory() as uow:
        await uow.searches.add(subscription)
        await uow.searches.add_results([*reversed(run), *older])

        first = await uow.searches.list_results(subscription.id, limit=3)
        last = first[-1]
        rest = await uow.searches.list_results(subscription.id, before=(last.found_at, last.id))
    assert first == run[:3]
    assert rest[:1] == run[3:]
    assert sorted(r.url for r in rest[1:]) == sorted(r.url for r in older)


async def test_a_members_active_subscriptions_in_one_project_are_paused(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    theirs = [a_subscription(world.project, world.user) for _ in range(2)]
    theirs[1].active = False
    async with uow_factory() as uow:
        for subscription in theirs:
            await uow.searches.add(subscription)
        assert await uow.searches.pause_for_member(world.project.id, world.user.id, at(5)) == 1
        assert await uow.searches.pause_for_member(uuid.uuid4(), world.user.id, at(5)) == 0
        stored = await uow.searches.get(theirs[0].id)
        assert (stored.active, stored.updated_at) == (False, at(5))
        assert (await uow.searches.get(theirs[1].id)) == theirs[1]
        assert await uow.searches.count_active_for_user(world.user.id) == 0
