"""In-process ``RateLimiter``: the same fixed window, opened by a key's first hit, as Redis."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from whalli.ports.clock import Clock
from whalli.ports.rate_limiter import RateDecision, RateLimiter


class InMemoryRateLimiter(RateLimiter):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[datetime, int]] = {}  # key -> (window end, hits)

    async def refund(self, key: str) -> None:
        window = self._windows.get(key)
        if window is not None and window[0] > self._clock.now() and window[1] > 0:
            self._windows[key] = (window[0], window[1] - 1)

    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window_seconds < 1:
            raise ValueError("window_seconds must be at least 1")
        now = self._clock.now()
        ends, count = self._windows.get(key, (now, 0))
        if ends <= now:  # expired (or never opened): this hit opens a new window
            ends, count = now + timedelta(seconds=window_seconds), 0
        count += 1
        self._windows[key] = (ends, count)
        # Until the window ends, in whole seconds rounded up, as Redis.
        reset_ms = (ends - now) // timedelta(milliseconds=1)
        return RateDecision(
            allowed=count <= limit,
            limit=limit,
            remaining=max(0, limit - count),
            reset_seconds=max(1, math.ceil(reset_ms / 1000)),
        )
