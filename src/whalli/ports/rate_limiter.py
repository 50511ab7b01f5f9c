"""Request rate limiting, shared by every API process."""

from __future__ import annotations

from typing import Protocol

from whalli.domain.model.base import Value


class RateDecision(Value, frozen=True, kw_only=True):
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    # False when no count was taken (limits disabled, or the store was unreachable and the
    # caller failed open): the numbers are then nominal and not worth telling the client.
    # Adapters always return True.
    metered: bool = True


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: int, window_seconds: int) -> RateDecision:
        """Count one request against ``key`` and decide, atomically across processes.

        Raises ``ServiceUnavailable`` when the store cannot be reached (the caller decides
        whether to fail open or closed).
        """
        ...
