"""Cost of one rate-limit check per request (``RequestLimits.check_request``: one EVALSHA).

Baseline: one plain Redis INCR on the same connection, in the same run. Both run sequentially
against a private embedded Redis (loopback, no persistence), in interleaved rounds: the ratio
is the median of each round's ratio, so drift between rounds (a busy machine) cancels out.

Measured twice: through redis-py (the adapter without ``lean``, and redis-py's INCR), and as
the app sends it, through the lean client (``adapters/redis/resp``; its INCR the baseline).
The lean check is also reported against redis-py's INCR: what a request pays now against the
cheapest command the old client could send.
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
from whalli.adapters.redis.resp import RespClient
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


async def _lean_incr_round(client: RespClient, n: int) -> float:
    key = f"bench:incr:{uuid.uuid4().hex}"
    started = time.perf_counter()
    for _ in range(n):
        await client.execute("INCR", key)
    return (time.perf_counter() - started) / n


def _ratio(times: list[float], baseline: list[float]) -> float:
    return round(statistics.median(a / b for a, b in zip(times, baseline, strict=True)), 2)


async def _measure(url: str) -> dict[str, float | str]:
    # One connection each: a path and its baseline pay the same socket and parser costs.
    client = Redis.from_url(url, single_connection_client=True)
    lean = RespClient(url)
    try:
        # A budget no round exhausts, so every check takes the allowed path (the common one).
        policy = RateLimitPolicy(per_user=RateLimit(limit=REQUESTS * 4, window_seconds=60))
        limits = RequestLimits(RedisRateLimiter(client, prefix="bench:rate:"), policy)
        lean_limits = RequestLimits(
            RedisRateLimiter(client, prefix="bench:rate-lean:", lean=lean), policy
        )
        for warm in (_limiter_round(limits, 100), _limiter_round(lean_limits, 100)):
            await warm  # loads the script, warms the connections
        await _incr_round(client, 100)
        await _lean_incr_round(lean, 100)
        limiter_t, incr_t, lean_t, lean_incr_t = [], [], [], []
        for _ in range(ROUNDS):
            incr_t.append(await _incr_round(client, REQUESTS))
            limiter_t.append(await _limiter_round(limits, REQUESTS))
            lean_incr_t.append(await _lean_incr_round(lean, REQUESTS))
            lean_t.append(await _limiter_round(lean_limits, REQUESTS))
    finally:
        await client.aclose()
        await lean.aclose()
    lim, incr = statistics.median(limiter_t), statistics.median(incr_t)
    lean_lim, lean_incr = statistics.median(lean_t), statistics.median(lean_incr_t)
    return {
        "redis_incr_us_per_call": round(incr * 1e6, 1),
        "rate_limit_check_us_per_request": round(lim * 1e6, 1),
        "added_us_per_request": round((lim - incr) * 1e6, 1),
        "ratio_check_vs_incr": _ratio(limiter_t, incr_t),
        "lean_incr_us_per_call": round(lean_incr * 1e6, 1),
        "lean_rate_limit_check_us_per_request": round(lean_lim * 1e6, 1),
        "lean_ratio_check_vs_lean_incr": _ratio(lean_t, lean_incr_t),
        "lean_ratio_check_vs_redis_py_incr": _ratio(lean_t, incr_t),
    }


def run() -> dict[str, float | str]:
    with tempfile.TemporaryDirectory(prefix="whalli-bench-redis-") as tmp:
        redis = EmbeddedRedis(Path(tmp), fast=True)
        state = redis.start(None)
        try:
            return asyncio.run(_measure(str(state["url"])))
        finally:
            redis.stop(state)
