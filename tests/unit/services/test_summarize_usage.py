"""SummarizeUsage: a user's usage over a range of UTC days, per model and per day."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.entities import a_user
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.day_ranges import MAX_DAYS
from whalli.domain.model.errors import (
    ApiKeyNotAllowed,
    InvalidInput,
    PermissionDenied,
    UserNotFound,
)
from whalli.domain.model.users import Role, User
from whalli.domain.services.usage.summarize_usage import (
    SummarizeUsage,
    SummarizeUsageHandler,
    UsageFigures,
)
from whalli.ports.usage import UsageRecord

TODAY = date(2031, 5, 20)
NOW = datetime(2031, 5, 20, 18, 30, tzinfo=UTC)


class Usage:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock(NOW)

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    async def user(self, **changes: object) -> User:
        user = a_user(**changes)
        async with self.uow() as uow:
            await uow.users.add(user)
            await uow.commit()
        return user

    async def spend(
        self, user: User, when: datetime, *, model: str = "gpt-4o", cost: float = 0.5,
        prompt: int = 10, completion: int = 5, cached: bool = False,
    ) -> None:  # fmt: skip
        record = UsageRecord(
            id=uuid.uuid4(), user_id=user.id, message_id=None, model=model,
            provider="anthropic" if model.startswith("claude") else "openai",
            prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost, cached=cached,
            created_at=when,
        )  # fmt: skip
        async with self.uow() as uow:
            await uow.usage.add(record)
            await uow.commit()

    async def summary(
        self, caller: User, user: User | None = None, *, api_key_id: uuid.UUID | None = None,
        **dates: date | None,
    ) -> object:  # fmt: skip
        command = SummarizeUsage(
            caller_id=caller.id, user_id=(user or caller).id, api_key_id=api_key_id, **dates
        )
        return await SummarizeUsageHandler(self.uow(), self.clock).execute(command)


@pytest.fixture
def usage() -> Usage:
    return Usage()


def day(d: date, hour: int = 12) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


async def test_the_default_range_is_the_last_30_days_with_every_day_listed(usage: Usage) -> None:
    ada = await usage.user()
    await usage.spend(ada, day(TODAY - timedelta(days=30)), cost=100)  # one day too old
    await usage.spend(ada, day(TODAY - timedelta(days=29), hour=0), prompt=1, completion=2)
    await usage.spend(ada, day(TODAY, hour=18), model="claude-3-5-haiku", cost=0.25)
    await usage.spend(ada, day(TODAY), cost=0.25, cached=True)

    summary = await usage.summary(ada)

    assert (summary.since, summary.until) == (TODAY - timedelta(days=29), TODAY)
    assert [d.day for d in summary.by_day] == [TODAY - timedelta(days=29 - i) for i in range(30)]
    assert summary.by_day[0].figures == UsageFigures(
        requests=1, prompt_tokens=1, completion_tokens=2, cost_usd=0.5
    )
    assert all(d.figures == UsageFigures() for d in summary.by_day[1:-1])
    assert summary.by_day[-1].figures.requests == 2
    assert summary.total == UsageFigures(
        requests=3, cached_requests=1, prompt_tokens=21, completion_tokens=12, cost_usd=1.0
    )
    # the most expensive model first
    assert [(m.model, m.provider, m.figures.requests) for m in summary.by_model] == [
        ("gpt-4o", "openai", 2), ("claude-3-5-haiku", "anthropic", 1),
    ]  # fmt: skip


async def test_a_given_range_includes_its_last_day_and_may_reach_the_future(usage: Usage) -> None:
    ada = await usage.user()
    last = TODAY + timedelta(days=3)
    await usage.spend(ada, datetime(2031, 5, 23, 23, 59, 59, tzinfo=UTC))
    await usage.spend(ada, datetime(2031, 5, 24, tzinfo=UTC), cost=9)

    summary = await usage.summary(ada, since=TODAY, until=last)

    assert [d.figures.requests for d in summary.by_day] == [0, 0, 0, 1]
    assert summary.total.cost_usd == 0.5


@settings(max_examples=30)
@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["a", "b", "c"]),
                          st.integers(0, 4)), max_size=15))  # fmt: skip
async def test_the_totals_per_model_and_per_day_add_up_to_the_total(
    spends: list[tuple[int, str, int]],
) -> None:
    usage = Usage()
    ada = await usage.user()
    for days_ago, model, quarters in spends:
        await usage.spend(ada, day(TODAY - timedelta(days=days_ago)), model=model,
                          cost=quarters / 4)  # fmt: skip

    summary = await usage.summary(ada, since=TODAY - timedelta(days=9))

    for parts in (summary.by_model, summary.by_day):
        figures = [p.figures for p in parts]
        assert sum(f.requests for f in figures) == summary.total.requests == len(spends)
        assert sum(f.cost_usd for f in figures) == summary.total.cost_usd
    costs = [m.figures.cost_usd for m in summary.by_model]
    assert costs == sorted(costs, reverse=True)


async def test_another_users_usage_is_for_admins_only(usage: Usage) -> None:
    ada, bob = await usage.user(), await usage.user()
    root = await usage.user(role=Role.ADMIN)
    await usage.spend(bob, NOW, cost=2)

    with pytest.raises(PermissionDenied, match="Only admins"):
        await usage.summary(ada, bob)
    assert (await usage.summary(root, bob)).total.cost_usd == 2
    assert (await usage.summary(bob)).total.cost_usd == 2
    assert (await usage.summary(root)).total.requests == 0
    with pytest.raises(UserNotFound):
        await usage.summary(root, msgspec.structs.replace(bob, id=uuid.uuid4()))
    demoted = msgspec.structs.replace(root, role=Role.USER)
    async with usage.uow() as uow:
        await uow.users.update(demoted)
        await uow.commit()
    with pytest.raises(PermissionDenied):
        await usage.summary(root, bob)


async def test_an_admins_api_key_reads_only_its_own_usage(usage: Usage) -> None:
    bob, root = await usage.user(), await usage.user(role=Role.ADMIN)
    await usage.spend(bob, NOW, cost=2)
    await usage.spend(root, NOW, cost=3)
    key_id = uuid.uuid4()

    with pytest.raises(ApiKeyNotAllowed, match="API key cannot use admin routes"):
        await usage.summary(root, bob, api_key_id=key_id)
    assert (await usage.summary(root, bob)).total.cost_usd == 2
    assert (await usage.summary(root, api_key_id=key_id)).total.cost_usd == 3
    assert (await usage.summary(bob, api_key_id=uuid.uuid4())).total.cost_usd == 2


@pytest.mark.parametrize(
    ("since", "until", "match"),
    [
        (TODAY, TODAY - timedelta(days=1), "from must not be after to"),
        (TODAY - timedelta(days=MAX_DAYS), TODAY, "at most 366 days"),
        (None, None, None),
        (TODAY - timedelta(days=MAX_DAYS - 1), TODAY, None),
    ],
)
async def test_a_range_runs_forward_and_spans_at_most_366_days(
    usage: Usage, since: date | None, until: date | None, match: str | None
) -> None:
    ada = await usage.user()
    if match is None:
        summary = await usage.summary(ada, since=since, until=until)
        assert len(summary.by_day) == (summary.until - summary.since).days + 1
        return
    with pytest.raises(InvalidInput, match=match) as info:
        await usage.summary(ada, since=since, until=until)
    assert info.value.details["field"] == "from"


async def test_transcriptions_count_with_their_cost_and_their_seconds_of_audio(
    usage: Usage,
) -> None:
    ada = await usage.user()
    await usage.spend(ada, NOW, cost=0.25)  # a reply
    for seconds, when in ((90.0, NOW), (30.0, NOW - timedelta(days=1))):
        record = UsageRecord(
            id=uuid.uuid4(), user_id=ada.id, message_id=None, model="whisper-1",
            provider="openai", prompt_tokens=0, completion_tokens=0,
            cost_usd=seconds / 60 * 0.006, cached=False, created_at=when, audio_seconds=seconds,
        )  # fmt: skip
        async with usage.uow() as uow:
            await uow.usage.add(record)
            await uow.commit()

    summary = await usage.summary(ada)

    total = summary.total
    assert (total.requests, total.audio_seconds) == (3, 120.0)
    assert total.cost_usd == pytest.approx(0.25 + 0.012)
    whisper = next(m for m in summary.by_model if m.model == "whisper-1")
    assert (whisper.provider, whisper.figures.audio_seconds) == ("openai", 120.0)
    assert [d.figures.audio_seconds for d in summary.by_day[-2:]] == [30.0, 90.0]
