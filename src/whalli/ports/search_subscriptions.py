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

    async def get_for_update(self, subscription_id: UUID) -> SearchSubscription:
        """``get``, and hold the row until the unit of work ends: a claim skips it meanwhile
        (and takes it at a later tick), a run's ``record_run`` waits. Raises
        ``SearchSubscriptionNotFound``."""
        ...

    async def update(self, subscription: SearchSubscription) -> None:
        """Raises ``SearchSubscriptionNotFound``."""
        ...

    async def delete(self, subscription_id: UUID) -> None:
        """Raises ``SearchSubscriptionNotFound``."""
        ...

    async def list_for_project(
        self, project_id: UUID, *, limit: int = 50, before: tuple[datetime, UUID] | None = None
    ) -> list[SearchSubscription]:
        """The project's subscriptions, newest first (``created_at``, then id); with ``before``,
        only those after that position in this order."""
        ...

    async def count_active_for_user(self, user_id: UUID) -> int:
        """How many active subscriptions ``user_id`` made (in any project)."""
        ...

    async def pause_for_member(self, project_id: UUID, user_id: UUID, now: datetime) -> int:
        """Pause (``active`` false, ``updated_at`` ``now``) the active subscriptions ``user_id``
        made in ``project_id``; return how many."""
        ...

    async def list_due(self, now: datetime, *, limit: int = 100) -> list[SearchSubscription]:
        """Active subscriptions whose next run is at or before ``now``, most overdue first."""
        ...

    async def claim_due(self, now: datetime, *, limit: int = 100) -> list[SearchSubscription]:
        """Take the active subscriptions due at ``now`` (most overdue first, at most ``limit``)
        and claim them (``SearchSubscription.claim(now)``: ``claimed_at`` ``now``, their next
        run one interval on; ``last_run_at`` unchanged) in the same statement. Rows another
        unit of work holds locked are skipped, so two claims at once (two workers) never both
        return one subscription."""
        ...

    async def record_run(self, subscription_id: UUID, now: datetime) -> None:
        """``SearchSubscription.record_run(now)`` on the stored row, changing no other column
        (a concurrent change or claim is kept). Nothing for a subscription that is gone."""
        ...

    async def record_failure(self, subscription_id: UUID, now: datetime, reason: str) -> None:
        """``SearchSubscription.record_failure(now, reason)`` on the stored row, changing no
        other column. Nothing for a subscription that is gone."""
        ...

    async def add_results(self, results: list[SearchResult]) -> list[SearchResult]:
        """Store results not seen before for their subscription (by fingerprint); return those.

        Two units of work adding the same result at once: only the one that commits first
        stores (and returns) it."""
        ...

    async def list_results(
        self, subscription_id: UUID, *, limit: int = 50, before: tuple[datetime, UUID] | None = None
    ) -> list[SearchResult]:
        """Newest first: by ``found_at`` descending, one run's results by ``rank`` (best
        first), then id descending; with ``before`` (the ``found_at`` and id of a result), only
        those after that result in this order."""
        ...
