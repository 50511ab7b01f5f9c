"""In-process ``RateLimiter``: the same sliding-window log as the Redis script."""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime, timedelta

from whalli.ports.clock import Clock
from whalli.ports.rate_limiter import RateDecision, RateLimiter


class InMemoryRateLimiter(RateLimiter):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._hits: dict[str, deque[datetime]] = {}

    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window_seconds < 1:
            raise ValueError("window_seconds must be at least 1")
        now = self._clock.now()
        window = timedelta(seconds=window_seconds)
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= window:
            hits.popleft()
        allowed = len(hits) < limit
        if allowed:
            hits.append(now)
        # Until the oldest counted hit leaves the window, in whole seconds rounded up, as Redis.
        reset_ms = (hits[0] + window - now) // timedelta(milliseconds=1)
        return RateDecision(
            allowed=allowed,
            limit=limit,
            remaining=limit - len(hits),
            reset_seconds=max(1, math.ceil(reset_ms / 1000)),
        )
