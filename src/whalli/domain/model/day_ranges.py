"""A range of whole UTC days asked for by a report (usage, feedback): its rules and bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from whalli.domain.model.base import Value
from whalli.domain.model.errors import InvalidInput

DEFAULT_DAYS = 30
MAX_DAYS = 366


class DayRange(Value, frozen=True, kw_only=True):
    since: date  # the first day
    until: date  # the last day, included

    @classmethod
    def of(cls, since: date | None, until: date | None, *, today: date) -> DayRange:
        """``until`` defaults to ``today``, ``since`` to ``DEFAULT_DAYS`` days up to
        ``until``; ``since`` after ``until``, or more than ``MAX_DAYS`` days, is
        ``InvalidInput`` (naming ``from``). The calendar's edges are kept, never overflowed."""
        last = until or today
        first = since or _days_before(last, DEFAULT_DAYS - 1)
        if first > last:
            raise InvalidInput("from must not be after to.", field="from")
        if (last - first).days + 1 > MAX_DAYS:
            raise InvalidInput(f"A range has at most {MAX_DAYS} days.", field="from")
        return cls(since=first, until=last)

    @property
    def start(self) -> datetime:
        """Its first moment."""
        return datetime.combine(self.since, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first moment after it (the last representable one, for the calendar's last
        day)."""
        if self.until == date.max:
            return datetime.max.replace(tzinfo=UTC)
        return datetime.combine(self.until + timedelta(days=1), time(), tzinfo=UTC)

    def days(self) -> list[date]:
        return [self.since + timedelta(days=i) for i in range((self.until - self.since).days + 1)]


def _days_before(day: date, days: int) -> date:
    """``days`` before ``day``, or the calendar's first day."""
    return day - timedelta(days=days) if (day - date.min).days >= days else date.min
