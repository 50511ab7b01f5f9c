"""Recurring web searches and the results they found."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from uuid import UUID

from whalli.domain.model.base import Entity, Value
from whalli.domain.model.errors import (
    InvalidInput,
    InvalidSchedule,
    ProviderError,
    ServiceUnavailable,
    WhalliError,
)
from whalli.domain.model.jobs import AbandonCause

MIN_INTERVAL = timedelta(minutes=15)
MAX_INTERVAL = timedelta(days=31)
QUERY_MAX = 400
# Active subscriptions a user may have at once (each runs a provider call per interval).
MAX_ACTIVE_SUBSCRIPTIONS = 20
LAST_ERROR_MAX = 200


class SearchSubscription(Entity, kw_only=True):
    """A recurring search. ``claimed_at``: when the scheduler last claimed a run (the next one
    counts from it); ``last_run_at``: when a run last queried the provider and stored what it
    found; ``last_error``/``last_error_at``: why and when the last run since then failed (None
    once a run succeeds)."""

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
    claimed_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None

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

    def claim(self, now: datetime) -> None:
        """Take the run due ``now``: the next is one interval after it, never in the past. The
        run has not happened yet (``last_run_at`` is the run's own: ``record_run``)."""
        self.claimed_at = now
        self.next_run_at = now + timedelta(minutes=self.interval_minutes)
        self.updated_at = now

    def record_run(self, now: datetime) -> None:
        """A run queried the provider and stored its results at ``now``; an earlier failure is
        over. A run older than the one recorded changes nothing (two runs at once)."""
        if self.last_run_at is not None and now < self.last_run_at:
            return
        self.last_run_at = now
        if self.last_error_at is not None and self.last_error_at <= now:
            self.last_error = self.last_error_at = None

    def record_failure(self, now: datetime, reason: str) -> None:
        """A run failed at ``now`` (``run_failure`` tells why); unless a run succeeded since."""
        if self.last_run_at is not None and now < self.last_run_at:
            return
        self.last_error, self.last_error_at = reason[:LAST_ERROR_MAX], now

    def has_outcome_since(self, since: datetime) -> bool:
        """Whether a run or a failure was recorded at or after ``since``."""
        return any(at is not None and at >= since for at in (self.last_run_at, self.last_error_at))


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


def run_failure(error: WhalliError) -> str:
    """What a user is told of a failed run: a short reason from the error's kind and HTTP
    status, never its message (which advises the operator) nor anything of the provider's
    answer or of the request (its key)."""
    status = error.details.get("upstream_status")
    http = f" (HTTP {status})" if isinstance(status, int) else ""
    if isinstance(error, ServiceUnavailable):
        if status == 429:
            return f"The search provider is limiting searches{http}."
        if http:
            return f"The search provider failed{http}."
        return "The search provider could not be reached or did not answer in time."
    if isinstance(error, ProviderError):
        if error.details.get("kind") == "protocol":
            return "The search provider answered without results."
        return f"The search provider refused the search{http}."
    return "The search failed."


def abandoned_run_failure(cause: AbandonCause) -> str:
    """What a user is told of a run the queue gave up on without a reason of its own."""
    if cause == "expired":
        return "The search waited too long to be run and was skipped."
    if cause == "interrupted":
        return "The search was interrupted too many times and was skipped."
    return "The search could not be run."


# What a user is told of a run the scheduler claimed but could not queue (the queue down)
UNQUEUED_RUN = "The search could not be queued to run; it runs at its next interval."


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
