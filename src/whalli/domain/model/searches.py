"""Recurring web searches and the results they found."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from uuid import UUID

from whalli.domain.model.base import Entity, Value
from whalli.domain.model.errors import InvalidInput, InvalidSchedule

MIN_INTERVAL = timedelta(minutes=15)
MAX_INTERVAL = timedelta(days=31)
QUERY_MAX = 400
# Active subscriptions a user may have at once (each runs a provider call per interval).
MAX_ACTIVE_SUBSCRIPTIONS = 20


class SearchSubscription(Entity, kw_only=True):
    id: UUID
    user_id: UUID
    project_id: UUID
    query: str
    interval_minutes: int
    active: bool = True
    notify_email: bool = True
    last_run_at: datetime | None = None
    next_run_at: datetime
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(
        cls,
        *,
        id: UUID,
        user_id: UUID,
        project_id: UUID,
        query: str,
        interval_minutes: int,
        now: datetime,
        notify_email: bool = True,
    ) -> SearchSubscription:
        validate_interval(interval_minutes)
        return cls(
            id=id,
            user_id=user_id,
            project_id=project_id,
            query=search_query(query),
            interval_minutes=interval_minutes,
            notify_email=notify_email,
            next_run_at=now,
            created_at=now,
            updated_at=now,
        )

    def is_due(self, now: datetime) -> bool:
        return self.active and now >= self.next_run_at

    def mark_ran(self, now: datetime) -> None:
        """Schedule the next run one interval after this one, never in the past."""
        self.last_run_at = now
        self.next_run_at = now + timedelta(minutes=self.interval_minutes)
        self.updated_at = now


def search_query(text: str) -> str:
    """The query as stored: whitespace runs made one space, 1 to ``QUERY_MAX`` characters."""
    cleaned = " ".join(text.split())
    if not 1 <= len(cleaned) <= QUERY_MAX:
        raise InvalidInput(f"A search query needs 1 to {QUERY_MAX} characters.", field="query")
    return cleaned


def validate_interval(minutes: int) -> None:
    """``InvalidSchedule`` unless ``MIN_INTERVAL`` <= ``minutes`` <= ``MAX_INTERVAL``; the int
    is compared in minutes, so any size of number is refused, never an overflow."""
    if not _minutes(MIN_INTERVAL) <= minutes <= _minutes(MAX_INTERVAL):
        raise InvalidSchedule(
            f"The interval must be between {_minutes(MIN_INTERVAL)} minutes "
            f"and {MAX_INTERVAL.days} days."
        )


def _minutes(interval: timedelta) -> int:
    return int(interval.total_seconds() // 60)


class SearchHit(Value, frozen=True, kw_only=True):
    """One result as a search provider returns it."""

    url: str
    title: str
    snippet: str = ""


def fingerprint(url: str) -> str:
    """Identity of a result across runs: the URL without fragment or trailing slash."""
    canonical = url.split("#", 1)[0].rstrip("/").lower()
    return hashlib.sha256(canonical.encode()).hexdigest()


class SearchResult(Value, frozen=True, kw_only=True):
    """One stored result; ``rank`` is its place in its run's answer (0: the provider's best),
    so the results of one run (one ``found_at``) list best first."""

    id: UUID
    subscription_id: UUID
    url: str
    title: str
    snippet: str
    fingerprint: str
    found_at: datetime
    rank: int = 0
