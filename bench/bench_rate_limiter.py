"""Cost of one rate-limit check per request (``RequestLimits.check_request``: one EVALSHA).

Baseline: one plain Redis INCR on the same connection, in the same run. Both run sequentially
against a private embedded Redis (loopback, no persistence), in interleaved rounds: the ratio
is the median of each round's ratio, so drift between rounds (a busy machine) cancels out.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

from whalli.adapters.embedded.redis import EmbeddedRedis
from whalli.adapters.redis.rate_limiter import RedisRateLimiter
from whalli.domain.services.rate_limits import RateLimit, RateLimitPolicy, RequestLimits

REQUESTS = 5000
ROUNDS = 9


async def _limiter_round(limits: RequestLimits, n: int) -> float:
    user = uuid.uuid4()
    started = time.perf_counter()
    for _ in range(n):
        await limits.check_request(user, "203.0.113.7")
    return (time.perf_counter() - started) / n


async def _incr_round(client: Redis, n: int) -> float:
    key = f"bench:incr:{uuid.uuid4().hex}"
    started = time.perf_counter()
    for _ in range(n):
        await client.incr(key)
    return (time.perf_counter() - started) / n


async def _measure(url: str) -> dict[str, float | str]:
    # One connection: both paths pay the same socket and parser costs.
    client = Redis.from_url(url, single_connection_client=True)
    try:
        # A budget no round exhausts, so every check takes the allowed path (the common one).
        policy = RateLimitPolicy(per_user=RateLimit(limit=REQUESTS * 2, window_seconds=60))
        limits = RequestLimits(RedisRateLimiter(client, prefix="bench:rate:"), policy)
        await _limiter_round(limits, 100)  # loads the script, warms the connection
        await _incr_round(client, 100)
        limiter_t, incr_t = [], []
        for _ in range(ROUNDS):
            incr_t.append(await _incr_round(client, REQUESTS))
            limiter_t.append(await _limiter_round(limits, REQUESTS))
    finally:
        await client.aclose()
    lim, incr = statistics.median(limiter_t), statistics.median(incr_t)
    ratio = statistics.median(a / b for a, b in zip(limiter_t, incr_t, strict=True))
    return {
        "redis_incr_us_per_call": round(incr * 1e6, 1),
        "rate_limit_check_us_per_request": round(lim * 1e6, 1),
        "added_us_per_request": round((lim - incr) * 1e6, 1),
        "ratio_check_vs_incr": round(ratio, 2),
    }


def run() -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="whalli-bench-redis-") as tmp:
        redis = EmbeddedRedis(Path(tmp), fast=True)
        state = redis.start(None)
        try:
            return asyncio.run(_measure(str(state["url"])))
        finally:
            redis.stop(state)
