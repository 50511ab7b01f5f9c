"""Use case: a user's usage over a range of days, in total, per model and per day."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date
from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.day_ranges import DayRange
from whalli.domain.services.admin.access import require_admin
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork
from whalli.ports.usage import UsageDay


class SummarizeUsage(msgspec.Struct, frozen=True, kw_only=True):
    caller_id: UUID
    user_id: UUID  # whose usage: the caller's own, or (admins only) anyone's
    since: date | None = None  # the first day (UTC); default: DEFAULT_DAYS days up to ``until``
    until: date | None = None  # the last day, included (UTC); default: today
    api_key_id: UUID | None = None  # set when the caller authenticated with an API key
    # Asked as an admin (the admin route): the caller must be an admin with a session even
    # for their own usage (their own is at /api/usage).
    as_admin: bool = False


class UsageFigures(Value, frozen=True, kw_only=True):
    requests: int = 0
    cached_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached_prompt_tokens: int = 0  # of the prompt tokens, read from providers' prompt caches
    cache_write_tokens: int = 0  # and written to them
    reasoning_tokens: int = 0  # of the completion tokens, the models' hidden reasoning
    audio_seconds: float = 0.0  # of audio transcribed


class ModelUsage(Value, frozen=True, kw_only=True):
    model: str
    provider: str
    figures: UsageFigures


class DayUsage(Value, frozen=True, kw_only=True):
    day: date
    figures: UsageFigures


class UsageSummary(Value, frozen=True, kw_only=True):
    since: date
    until: date
    total: UsageFigures
    by_model: list[ModelUsage]  # the most expensive first (then by requests, then by name)
    by_day: list[DayUsage]  # every day of the range, oldest first, zeros included


class SummarizeUsageHandler:
    """Sum a user's usage records (streamed, cached and failed replies alike, ``/v1`` included;
    transcriptions too, with the seconds of audio they transcribed).

    Rules:
    - a user reads their own usage (with a session or an API key); another user's is for
      active admins only (``PermissionDenied``), signed in with a session (an API key gets
      ``ApiKeyNotAllowed``, 403); an admin asking for an unknown account gets ``UserNotFound``;
    - asked ``as_admin`` (the admin route), the admin rule holds for the caller's own usage
      too;
    - days are UTC; ``until`` is included; ``since`` after ``until`` or a range of more than
      ``MAX_DAYS`` days is ``InvalidInput``; a range may reach into the future (nothing there);
    - ``by_day`` lists every day of the range, so a chart needs no gap filling.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: SummarizeUsage) -> UsageSummary:
        today = self._clock.now().astimezone(UTC).date()
        days = DayRange.of(command.since, command.until, today=today)
        async with self._uow as uow:
            if command.as_admin or command.user_id != command.caller_id:
                await require_admin(uow, command.caller_id, api_key_id=command.api_key_id)
                await uow.users.get(command.user_id)  # UserNotFound for an unknown account
            rows = await uow.usage.daily(command.user_id, since=days.start, until=days.end)
        return UsageSummary(
            since=days.since, until=days.until, total=_sum(rows), by_model=_by_model(rows),
            by_day=_by_day(rows, days),
        )  # fmt: skip


def _sum(days: Iterable[UsageDay]) -> UsageFigures:
    rows = list(days)
    return UsageFigures(
        requests=sum(d.requests for d in rows),
        cached_requests=sum(d.cached_requests for d in rows),
        prompt_tokens=sum(d.prompt_tokens for d in rows),
        completion_tokens=sum(d.completion_tokens for d in rows),
        cost_usd=sum((d.cost_usd for d in rows), 0.0),
        cached_prompt_tokens=sum(d.cached_prompt_tokens for d in rows),
        cache_write_tokens=sum(d.cache_write_tokens for d in rows),
        reasoning_tokens=sum(d.reasoning_tokens for d in rows),
        audio_seconds=sum((d.audio_seconds for d in rows), 0.0),
    )


def _by_model(days: list[UsageDay]) -> list[ModelUsage]:
    groups: dict[tuple[str, str], list[UsageDay]] = {}
    for d in days:
        groups.setdefault((d.model, d.provider), []).append(d)
    models = [
        ModelUsage(model=model, provider=provider, figures=_sum(rows))
        for (model, provider), rows in groups.items()
    ]
    models.sort(key=lambda m: (-m.figures.cost_usd, -m.figures.requests, m.model, m.provider))
    return models


def _by_day(rows: list[UsageDay], days: DayRange) -> list[DayUsage]:
    groups: dict[date, list[UsageDay]] = {}
    for d in rows:
        groups.setdefault(d.day, []).append(d)
    return [DayUsage(day=day, figures=_sum(groups.get(day, ()))) for day in days.days()]
