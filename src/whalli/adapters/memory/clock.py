"""A clock that only moves when told to, so tests control expiry and windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from whalli.domain.model.base import utc
from whalli.ports.clock import Clock

DEFAULT_START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class ManualClock(Clock):
    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = utc(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds); returns the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now += step
        return self._now

    def set(self, when: datetime) -> None:
        self._now = utc(when)


# A clock nobody advances is a fixed clock; one class keeps the two from drifting apart.
FixedClock = ManualClock
