"""``RateLimiter`` on Redis: a fixed window opened by a key's first hit, in one Lua script.

Each hit is one EVALSHA: INCR the key's counter, give the counter the window's lifetime when this
hit opened it, read the time left. It is atomic, so every API process shares one exact count, and
the lifetime runs on the Redis server's clock, so skewed app clocks do not matter.

Trade-off (measured in bench/bench_rate_limiter.py): a sliding-window log (a sorted set of hit
times) is exact over any span but took six commands and about twice the round trip of a plain
INCR; this window takes two commands and O(1) memory per key. The price: the window starts at a
key's first hit rather than sliding, so a client that spends its budget at the end of one window
and again at the start of the next can make up to twice ``limit`` requests in a short span.
Denied hits are counted as well but never lengthen the window, so a refused client is let in
again when the window that refused it ends. (The client retries a command that timed out;
should the first attempt have run after all, one hit is counted twice: the error is on the
strict side.)
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable
from typing import Any

import structlog
from redis import exceptions as rx
from redis.asyncio import Redis

from whalli.adapters.prometheus.metrics import rate_limiter_errors
from whalli.adapters.redis.errors import FAILURES, translated, unavailable
from whalli.adapters.redis.resp import RespClient
from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.rate_limiter import RateDecision, RateLimiter

# KEYS[1]: the key; ARGV: the window in ms, the limit. Returns one integer packing the hits in
# this window (capped at limit + 1: more tells nothing) and the ms until it ends: an integer reply
# parses markedly faster than an array in redis-py, and both fit exactly in Lua's doubles.
_FIXED_WINDOW = """
local count = redis.call('INCR', KEYS[1])
local ttl = -1
if count > 1 then
  ttl = redis.call('PTTL', KEYS[1])
end
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return math.min(count, tonumber(ARGV[2]) + 1) * 4294967296 + ttl
"""
# KEYS[1]: the key. One hit less, in the window still open (a key gone stays gone).
_REFUND = """
if (tonumber(redis.call('GET', KEYS[1])) or 0) > 0 then
  redis.call('DECR', KEYS[1])
end
return 1
"""
_TTL_BITS = 32
MAX_LIMIT = (1 << 20) - 1
MAX_WINDOW_SECONDS = ((1 << _TTL_BITS) - 1) // 1000

# How often, at most, a process logs that the store is unreachable (each failure is counted).
WARN_EVERY_SECONDS = 10.0

log = structlog.get_logger("whalli.rate_limiter")


class RedisRateLimiter(RateLimiter):
    """With ``lean`` (the app's wiring) each hit goes through the lean multiplexed client
    (``adapters/redis/resp``): every request counts one. Without it, through redis-py."""

    def __init__(
        self, client: Redis, prefix: str = "whalli:ratelimit:", *, lean: RespClient | None = None
    ) -> None:
        self._client = client
        self._lean = lean
        self._prefix = prefix
        # The script is loaded on first use (and again after a Redis restart: NOSCRIPT).
        self._script = client.register_script(_FIXED_WINDOW)
        self._refund = client.register_script(_REFUND)
        self._last_warning: float | None = None
        self._unlogged_failures = 0

    async def refund(self, key: str) -> None:
        with translated():
            await self._refund(keys=[self._prefix + key])

    def hit(self, key: str, limit: int, window_seconds: int) -> Awaitable[RateDecision]:
        """Through the lean client, the count is written before this returns and the decision
        is a future resolved from its answer: the caller's other work overlaps the round
        trip, with no task, and a decision dropped unawaited leaves nothing behind (the
        request is counted all the same). With no connection open yet, a task connects and
        sends it. Without the lean client, a coroutine sends it through redis-py when
        awaited."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window_seconds < 1:
            raise ValueError("window_seconds must be at least 1")
        if limit > MAX_LIMIT or window_seconds > MAX_WINDOW_SECONDS:
            raise ValueError(f"limit must be at most {MAX_LIMIT}, window at most 49 days")
        full_key, window_ms = self._prefix + key, window_seconds * 1000
        lean = self._lean
        if lean is None:
            return self._decided(self._evalsha(full_key, window_ms, limit), limit)
        sent = lean.send_now("EVALSHA", self._script.sha, 1, full_key, window_ms, limit)
        if sent is None:
            return asyncio.ensure_future(
                self._decided(self._evalsha(full_key, window_ms, limit), limit)
            )
        decision: asyncio.Future[RateDecision] = sent.get_loop().create_future()
        sent.add_done_callback(
            functools.partial(self._answered, decision, lean, full_key, window_ms, limit)
        )
        return decision

    def _answered(
        self,
        decision: asyncio.Future[RateDecision],
        lean: RespClient,
        key: str,
        window_ms: int,
        limit: int,
        sent: asyncio.Future[Any],
    ) -> None:
        error = None if sent.cancelled() else sent.exception()
        if isinstance(error, rx.NoScriptError):  # a restarted Redis: EVAL loads it again,
            again = asyncio.ensure_future(
                self._decided(self._eval(lean, key, window_ms, limit), limit)
            )
            again.add_done_callback(functools.partial(_pass_on, decision))  # (counted even
            return  # when the caller left, as the docstring says)
        if decision.done():  # its caller left (the request is counted all the same)
            return
        if sent.cancelled():
            decision.cancel()
        elif error is not None:
            failure = unavailable(error) if isinstance(error, FAILURES) else error
            if isinstance(failure, ServiceUnavailable):
                self._report(failure)
            decision.set_exception(failure)
            decision.exception()  # retrieved: a caller that left does not warn at GC
        else:
            decision.set_result(_decision(sent.result(), limit))

    async def _decided(self, packed: Awaitable[Any], limit: int) -> RateDecision:
        """The decision the script's answer ``packed`` gives (a failure counted and raised)."""
        try:
            with translated():
                answer = await packed
        except ServiceUnavailable as e:
            self._report(e)
            raise
        return _decision(answer, limit)

    async def _evalsha(self, key: str, window_ms: int, limit: int) -> Any:
        lean = self._lean
        if lean is not None:
            try:
                return await lean.execute("EVALSHA", self._script.sha, 1, key, window_ms, limit)
            except rx.NoScriptError:
                return await self._eval(lean, key, window_ms, limit)
        # EVALSHA straight on the client, skipping the Script wrapper's per-call work.
        try:
            return await self._client.evalsha(self._script.sha, 1, key, window_ms, limit)
        except rx.NoScriptError:
            return await self._script(keys=[key], args=[window_ms, limit])

    @staticmethod
    async def _eval(lean: RespClient, key: str, window_ms: int, limit: int) -> Any:
        """The script sent whole, through the lean client (which Redis then keeps again)."""
        return await lean.execute("EVAL", _FIXED_WINDOW, 1, key, window_ms, limit)

    def _report(self, error: ServiceUnavailable) -> None:
        rate_limiter_errors().inc()
        self._unlogged_failures += 1
        now = time.monotonic()
        if self._last_warning is not None and now - self._last_warning < WARN_EVERY_SECONDS:
            return
        self._last_warning = now
        log.warning(
            "rate_limiter_unavailable", reason=error.message, failures=self._unlogged_failures
        )
        self._unlogged_failures = 0


def _decision(packed: Any, limit: int) -> RateDecision:
    count, reset_ms = divmod(int(packed), 1 << _TTL_BITS)
    return RateDecision(
        allowed=count <= limit,
        limit=limit,
        remaining=max(0, limit - count),
        reset_seconds=max(1, math.ceil(reset_ms / 1000)),
    )


def _pass_on(decision: asyncio.Future[RateDecision], task: asyncio.Future[RateDecision]) -> None:
    """``task``'s outcome as ``decision``'s (unless its caller left)."""
    error = None if task.cancelled() else task.exception()
    if decision.done():
        return
    if task.cancelled():
        decision.cancel()
    elif error is not None:
        decision.set_exception(error)
        decision.exception()  # retrieved: a caller that left does not warn at GC
    else:
        decision.set_result(task.result())
