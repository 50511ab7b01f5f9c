"""``RateLimiter`` on Redis: a sliding-window log in a sorted set, updated by one Lua script.

Each allowed hit is a member scored with the server's time in milliseconds. The script drops
hits older than the window, counts the rest and records the new hit only when under the limit,
all in one atomic EVALSHA, so every API process shares one exact count. Denied hits are not
recorded, which bounds a key's size by ``limit``. The time comes from the Redis server (TIME), so
processes with skewed clocks still agree. (The client retries a command that timed out; should
the first attempt have run after all, one request is counted twice: the error is on the strict
side.)
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from redis.asyncio import Redis

from whalli.adapters.redis.errors import translated
from whalli.ports.rate_limiter import RateDecision, RateLimiter

# KEYS[1]: the key; ARGV: limit, window in ms, a unique member for this hit.
# Returns {allowed (0/1), hits counted in the window, ms until the oldest counted hit leaves it}.
_SLIDING_WINDOW = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, ARGV[3])
  count = count + 1
  allowed = 1
end
local reset = window
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
if oldest[2] then
  reset = tonumber(oldest[2]) + window - now
  redis.call('PEXPIRE', key, window)
end
return {allowed, count, reset}
"""


def _check_limits(limit: int, window_seconds: int) -> None:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if window_seconds < 1:
        raise ValueError("window_seconds must be at least 1")


def _decision(allowed: bool, limit: int, count: int, reset_ms: int) -> RateDecision:
    return RateDecision(
        allowed=allowed,
        limit=limit,
        remaining=max(0, limit - count),
        reset_seconds=max(1, math.ceil(reset_ms / 1000)),
    )


class RedisRateLimiter(RateLimiter):
    def __init__(self, client: Redis, prefix: str = "whalli:ratelimit:") -> None:
        self._prefix = prefix
        # register_script only computes the SHA; the script is loaded on first use (and again
        # after a Redis restart, when EVALSHA answers NOSCRIPT).
        self._script = client.register_script(_SLIDING_WINDOW)

    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        _check_limits(limit, window_seconds)
        member = secrets.token_hex(8)
        with translated():
            result: Any = await self._script(
                keys=[self._prefix + key], args=[limit, window_seconds * 1000, member]
            )
        allowed, count, reset_ms = (int(v) for v in result)
        return _decision(bool(allowed), limit, count, reset_ms)
