"""Storage of recurring searches and their results."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.searches import SearchResult, SearchSubscription


class SearchSubscriptionRepository(Protocol):
    async def add(self, subscription: SearchSubscription) -> None: ...

    async def get(self, subscription_id: UUID) -> SearchSubscription:
        """Raises ``SearchSubscriptionNotFound``."""
        ...

    async def update(self, subscription: SearchSubscription) -> None:
        """Raises ``SearchSubscriptionNotFound``."""
        ...

    async def delete(self, subscription_id: UUID) -> None:
        """Raises ``SearchSubscriptionNotFound``."""
        ...

    async def list_due(self, now: datetime, *, limit: int = 100) -> list[SearchSubscription]:
        """Active subscriptions whose next run is at or before ``now``, most overdue first."""
        ...

    async def add_results(self, results: list[SearchResult]) -> list[SearchResult]:
        """Store results not seen before for their subscription (by fingerprint); return those."""
        ...

    async def list_results(self, subscription_id: UUID, *, limit: int = 50) -> list[SearchResult]:
        """Newest first."""
        ...
