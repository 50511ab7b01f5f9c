"""Use case: how readers rated each model's replies over a range of days (admins only)."""

from __future__ import annotations

from datetime import UTC, date
from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.day_ranges import DayRange
from whalli.domain.services.admin.access import require_admin
from whalli.ports.clock import Clock
from whalli.ports.feedback import ModelRatings
from whalli.ports.unit_of_work import UnitOfWork


class SummarizeFeedback(msgspec.Struct, frozen=True, kw_only=True):
    admin_id: UUID
    since: date | None = None
    until: date | None = None
    api_key_id: UUID | None = None  # set when the caller authenticated with an API key


class FeedbackSummary(Value, frozen=True, kw_only=True):
    since: date
    until: date
    by_model: list[ModelRatings]  # by model id


class SummarizeFeedbackHandler:
    """Count the ratings given (or last changed) in a range of UTC days, per model.

    Rules:
    - active admins only (``PermissionDenied``), signed in with a session: an API key gets
      ``ApiKeyNotAllowed`` (403);
    - the range follows ``DayRange`` (default the last 30 days, at most 366, ``InvalidInput``
      otherwise);
    - only counts: no comment text and no reader is shown.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: SummarizeFeedback) -> FeedbackSummary:
        today = self._clock.now().astimezone(UTC).date()
        days = DayRange.of(command.since, command.until, today=today)
        async with self._uow as uow:
            await require_admin(uow, command.admin_id, api_key_id=command.api_key_id)
            ratings = await uow.feedback.by_model(since=days.start, until=days.end)
        return FeedbackSummary(since=days.since, until=days.until, by_model=ratings)
