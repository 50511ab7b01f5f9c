"""Contract of UsageRepository (tokens and cost per user and model), in memory and on Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import msgspec
import pytest

from whalli.domain.model.errors import Conflict, MessageNotFound, UserNotFound
from whalli.domain.model.users import User
from whalli.ports.usage import UsageRecord, UsageTotals

from ..conftest import UowFactory
from ..entities import a_message, a_user, at, committed_world

NOTHING = UsageTotals(requests=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)


def a_record(
    user: User,
    *,
    model: str = "gpt-4o-mini",
    when: datetime | None = None,
    message_id: uuid.UUID | None = None,
    prompt: int = 10,
    completion: int = 20,
    cost: float = 0.5,
) -> UsageRecord:
    # Costs are exact binary fractions so sums compare equal whatever the summing order.
    return UsageRecord(
        id=uuid.uuid4(), user_id=user.id, message_id=message_id, model=model,
        provider="openai", prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost,
        cached=False, created_at=when or at(0),
    )  # fmt: skip


async def test_totals_sum_a_users_records_since_a_time(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        await uow.usage.add(a_record(world.user, when=at(-10), prompt=1000))
        await uow.usage.add(a_record(world.user, when=at(0), prompt=3, completion=4, cost=0.25))
        await uow.usage.add(a_record(world.user, when=at(5), prompt=5, completion=6, cost=0.5))
        await uow.commit()
    async with uow_factory() as uow:
        totals = await uow.usage.totals(world.user.id, since=at(0))
    assert totals == UsageTotals(requests=2, prompt_tokens=8, completion_tokens=10, cost_usd=0.75)


async def test_totals_can_be_restricted_to_one_model(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        await uow.usage.add(a_record(world.user, model="gpt-4o-mini", prompt=1))
        await uow.usage.add(a_record(world.user, model="claude-3-5-haiku", prompt=2))
        await uow.usage.add(a_record(world.user, model="claude-3-5-haiku", prompt=4))
        await uow.commit()
    async with uow_factory() as uow:
        claude = await uow.usage.totals(world.user.id, since=at(0), model="claude-3-5-haiku")
        unused = await uow.usage.totals(world.user.id, since=at(0), model="grok-2")
    assert (claude.requests, claude.prompt_tokens) == (2, 6)
    assert unused == NOTHING


async def test_a_user_without_records_has_zero_totals(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        await uow.usage.add(a_record(world.user))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.usage.totals(uuid.uuid4(), since=at(-100)) == NOTHING


async def test_records_are_discarded_without_commit(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        await uow.usage.add(a_record(world.user))
    async with uow_factory() as uow:
        assert await uow.usage.totals(world.user.id, since=at(-100)) == NOTHING


async def test_usage_outlives_the_message_it_paid_for(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    message = a_message(world.chat)
    async with uow_factory() as uow:
        await uow.chats.add_message(message)
        await uow.usage.add(a_record(world.user, message_id=message.id, prompt=7))
        await uow.commit()
    async with uow_factory() as uow:
        await uow.chats.delete(world.chat.id)
        await uow.commit()
    async with uow_factory() as uow:
        totals = await uow.usage.totals(world.user.id, since=at(-100))
    assert (totals.requests, totals.prompt_tokens) == (1, 7)


async def test_a_record_needs_an_existing_user(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.usage.add(a_record(a_user()))


async def test_a_record_needs_an_existing_message_when_it_names_one(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        with pytest.raises(MessageNotFound, match="Message not found"):
            await uow.usage.add(a_record(world.user, message_id=uuid.uuid4()))


async def test_a_record_id_is_used_once(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    record = a_record(world.user)
    async with uow_factory() as uow:
        await uow.usage.add(record)
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(Conflict, match="already taken"):
            await uow.usage.add(msgspec.structs.replace(record, prompt_tokens=1))


async def test_daily_sums_per_utc_day_and_model_within_the_range(uow_factory: UowFactory) -> None:
    """Days are UTC, whatever time zone a record's time was written in; ``until`` is excluded."""
    world, other = await committed_world(uow_factory()), a_user()
    day1 = datetime(2031, 3, 1, tzinfo=UTC)
    plus2 = timezone(timedelta(hours=2))
    records = [
        a_record(world.user, when=day1 - timedelta(microseconds=1), prompt=1000),  # before
        a_record(world.user, when=day1, prompt=1, completion=2, cost=0.25),
        # 01:30 on 2 March at +02:00 is 23:30 on 1 March in UTC
        a_record(world.user, when=datetime(2031, 3, 2, 1, 30, tzinfo=plus2), prompt=3, cost=0.5),
        msgspec.structs.replace(a_record(world.user, when=day1 + timedelta(hours=1)), cached=True),
        a_record(world.user, model="claude-3-5-haiku", when=day1 + timedelta(hours=2), prompt=7),
        a_record(world.user, when=day1 + timedelta(days=1, hours=23, minutes=59), prompt=9),
        a_record(world.user, when=day1 + timedelta(days=2), prompt=1000),  # at until: excluded
        a_record(other, when=day1 + timedelta(hours=3), prompt=1000),  # someone else's
    ]
    async with uow_factory() as uow:
        await uow.users.add(other)
        for record in records:
            await uow.usage.add(record)
        await uow.commit()

    async with uow_factory() as uow:
        days = await uow.usage.daily(world.user.id, since=day1, until=day1 + timedelta(days=2))

    mar1, mar2 = date(2031, 3, 1), date(2031, 3, 2)
    assert [(d.day, d.model) for d in days] == [
        (mar1, "claude-3-5-haiku"), (mar1, "gpt-4o-mini"), (mar2, "gpt-4o-mini"),
    ]  # fmt: skip
    claude, gpt, next_day = days
    assert (claude.requests, claude.prompt_tokens, claude.provider) == (1, 7, "openai")
    assert (gpt.requests, gpt.cached_requests) == (3, 1)
    assert (gpt.prompt_tokens, gpt.completion_tokens, gpt.cost_usd) == (14, 42, 1.25)
    assert (next_day.requests, next_day.prompt_tokens) == (1, 9)
    async with uow_factory() as uow:
        assert await uow.usage.daily(other.id, since=day1, until=day1) == []
