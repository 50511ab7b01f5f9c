"""Request rate limiting, shared by every API process."""

from __future__ import annotations

from collections.abc import Awaitable
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
    def hit(self, key: str, limit: int, window_seconds: int) -> Awaitable[RateDecision]:
        """Count one request against ``key`` and decide, atomically across processes; the
        awaitable gives the decision. An adapter may send the count before it returns, so that
        it travels while the caller does other work (an ``async def`` sends it when awaited);
        the request is then counted even if the awaitable is dropped.

        Raises ``ServiceUnavailable`` when the store cannot be reached (the caller decides
        whether to fail open or closed), when awaited.
        """
        ...

    async def refund(self, key: str) -> None:
        """Take back one hit of ``key``'s current window (a request counted against a budget
        it turned out not to belong to); nothing once the window ended. Raises
        ``ServiceUnavailable`` when the store cannot be reached."""
        return None
