"""Contract of SearchSubscriptionRepository, in memory and on Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from whalli.domain.model.errors import InvalidInput, SearchSubscriptionNotFound
from whalli.domain.model.searches import SearchSubscription

from ..conftest import UowFactory
from ..entities import a_result, a_subscription, at, committed_world

# list_due looks at every subscription in the database; the tests that call it place theirs in
# year 1, where no other test puts any, and never commit them.
EARLY = datetime(1, 1, 1, tzinfo=UTC)


async def test_a_subscription_reads_back_equal_after_a_claim_a_failure_and_a_run(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    subscription = a_subscription(world.project, world.user)
    async with uow_factory() as uow:
        await uow.searches.add(subscription)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.searches.get(subscription.id) == subscription
        subscription.claim(at(10))
        subscription.record_failure(at(11), "The search provider failed (HTTP 503).")
        await uow.searches.update(subscription)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.searches.get(subscription.id) == subscription
        subscription.record_run(at(12))
        subscription.active = False
        await uow.searches.update(subscription)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.searches.get(subscription.id) == subscription


async def test_an_unknown_subscription_is_not_found(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    ghost = a_subscription(world.project, world.user)
    async with uow_factory() as uow:
        with pytest.raises(SearchSubscriptionNotFound, match="Search subscription not found"):
            await uow.searches.get(ghost.id)
        with pytest.raises(SearchSubscriptionNotFound, match="Search subscription not found"):
            await uow.searches.update(ghost)
        with pytest.raises(SearchSubscriptionNotFound, match="Search subscription not found"):
            await uow.searches.delete(ghost.id)


async def test_list_due_returns_active_subscriptions_due_now_most_overdue_first(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    now = EARLY + timedelta(days=10)
    later, overdue, on_time = (
        a_subscription(world.project, world.user, now=now + timedelta(minutes=1)),
        a_subscription(world.project, world.user, now=EARLY + timedelta(days=2)),
        a_subscription(world.project, world.user, now=now),
    )
    paused = a_subscription(world.project, world.user, now=EARLY + timedelta(days=1))
    paused.active = False
    async with uow_factory() as uow:
        for subscription in (later, overdue, on_time, paused):
            await uow.searches.add(subscription)

        assert await uow.searches.list_due(now) == [overdue, on_time]
        assert await uow.searches.list_due(now, limit=1) == [overdue]
        with pytest.raises(InvalidInput, match="limit must not be negative"):
            await uow.searches.list_due(now, limit=-1)


async def test_add_results_stores_and_returns_only_results_not_seen_before(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    subscription = a_subscription(world.project, world.user)
    first = a_result(subscription, "https://example.org/a", found_at=at(1))
    async with uow_factory() as uow:
        await uow.searches.add(subscription)
        assert await uow.searches.add_results([first]) == [first]
        await uow.commit()

    again = a_result(subscription, "https://EXAMPLE.org/a/#top", found_at=at(2))
    new = a_result(subscription, "https://example.org/b", found_at=at(2))
    twin = a_result(subscription, "https://example.org/b/", found_at=at(2))
    async with uow_factory() as uow:
        assert await uow.searches.add_results([again, new, twin]) == [new]
        assert await uow.searches.add_results([]) == []
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.searches.list_results(subscription.id) == [new, first]


async def test_the_same_url_is_new_for_another_subscription(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    one, two = (a_subscription(world.project, world.user) for _ in range(2))
    async with uow_factory() as uow:
        await uow.searches.add(one)
        await uow.searches.add(two)
        results = [a_result(s, "https://example.org/same") for s in (one, two)]
        assert await uow.searches.add_results(results) == results


async def test_results_are_listed_newest_first_up_to_the_limit(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    subscription = a_subscription(world.project, world.user)
    results = [a_result(subscription, f"https://example.org/{n}", found_at=at(n)) for n in range(4)]
    async with uow_factory() as uow:
        await uow.searches.add(subscription)
        await uow.searches.add_results(results)

        assert await uow.searches.list_results(subscription.id, limit=2) == results[:1:-1]
        assert await uow.searches.list_results(uuid.uuid4()) == []


async def test_results_need_an_existing_subscription(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    ghost = a_subscription(world.project, world.user)
    async with uow_factory() as uow:
        with pytest.raises(SearchSubscriptionNotFound, match="Search subscription not found"):
            await uow.searches.add_results([a_result(ghost, "https://example.org/x")])


async def test_deleting_a_subscription_deletes_its_results(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    subscription = a_subscription(world.project, world.user)
    async with uow_factory() as uow:
        await uow.searches.add(subscription)
        await uow.searches.add_results([a_result(subscription, "https://example.org/x")])
        await uow.commit()
    async with uow_factory() as uow:
        await uow.searches.delete(subscription.id)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.searches.list_results(subscription.id) == []
        with pytest.raises(SearchSubscriptionNotFound, match="Search subscription not found"):
            await uow.searches.get(subscription.id)


async def test_a_run_and_a_failure_are_recorded_on_the_row_in_time_order_only(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    subscription = a_subscription(world.project, world.user)
    async with uow_factory() as uow:
        await uow.searches.add(subscription)
        await uow.commit()
    expected = await _stored(uow_factory, subscription.id)

    steps = [
        ("failure", at(5), "The search provider failed (HTTP 503)."),
        ("run", at(4), ""),  # older than the failure: recorded, the failure stays
        ("run", at(6), ""),  # clears the failure
        ("failure", at(5), "A failure older than the last run"),  # changes nothing
        ("run", at(3), ""),  # older than the last run: changes nothing
        ("failure", at(7), "x" * 500),  # capped
    ]
    for kind, when, reason in steps:
        async with uow_factory() as uow:
            if kind == "run":
                await uow.searches.record_run(subscription.id, when)
                expected.record_run(when)
            else:
                await uow.searches.record_failure(subscription.id, when, reason)
                expected.record_failure(when, reason)
            await uow.commit()
        assert await _stored(uow_factory, subscription.id) == expected, (kind, when)

    assert (expected.last_run_at, expected.last_error_at) == (at(6), at(7))
    assert expected.last_error == "x" * 200
    async with uow_factory() as uow:  # a subscription that is gone: nothing, no error
        await uow.searches.record_run(uuid.uuid4(), at(8))
        await uow.searches.record_failure(uuid.uuid4(), at(8), "gone")


async def _stored(uow_factory: UowFactory, subscription_id: uuid.UUID) -> SearchSubscription:
    async with uow_factory() as uow:
        return await uow.searches.get(subscription_id)
