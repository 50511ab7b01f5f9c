"""Recurring searches and their results in Postgres."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import (
    PostgresRepository,
    assignments,
    check_limit,
    columns,
    placeholders,
)
from whalli.domain.model.errors import SearchSubscriptionNotFound
from whalli.domain.model.searches import LAST_ERROR_MAX, SearchResult, SearchSubscription
from whalli.ports.search_subscriptions import SearchSubscriptionRepository

_COLUMNS = (
    "id",
    "user_id",
    "project_id",
    "query",
    "interval_minutes",
    "active",
    "notify_email",
    "last_run_at",
    "next_run_at",
    "created_at",
    "updated_at",
    "claimed_at",
    "last_error",
    "last_error_at",
)
_SELECT = f"SELECT {columns(_COLUMNS)} FROM search_subscriptions"
_INSERT = (
    f"INSERT INTO search_subscriptions ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)})"
)
_UPDATE = f"UPDATE search_subscriptions SET {assignments(_COLUMNS[1:])} WHERE id = %(id)s"
# Served by the partial index on next_run_at WHERE active.
_DUE = f"{_SELECT} WHERE active AND next_run_at <= %(now)s ORDER BY next_run_at, id LIMIT %(limit)s"

_PREFIXED = ", ".join(f"s.{c}" for c in _COLUMNS)
# Claim in one statement: the due rows are locked (rows another claim holds are skipped),
# claimed (SearchSubscription.claim) and returned, most overdue first.
_CLAIM_DUE = (
    "WITH due AS (SELECT id, next_run_at FROM search_subscriptions "
    "WHERE active AND next_run_at <= %(now)s ORDER BY next_run_at, id LIMIT %(limit)s "
    "FOR UPDATE SKIP LOCKED), "
    "claimed AS (UPDATE search_subscriptions s SET claimed_at = %(now)s, "
    "next_run_at = %(now)s + make_interval(mins => s.interval_minutes), updated_at = %(now)s "
    f"FROM due WHERE s.id = due.id RETURNING {_PREFIXED}, due.next_run_at AS due_at) "
    f"SELECT {columns(_COLUMNS)} FROM claimed ORDER BY due_at, id"
)

# SearchSubscription.record_run and record_failure, in one statement each: a run older than
# the one recorded changes nothing; a success clears a failure recorded at or before it.
_RECORD_RUN = (
    "UPDATE search_subscriptions SET last_run_at = %(now)s, "
    "last_error = CASE WHEN last_error_at <= %(now)s THEN NULL ELSE last_error END, "
    "last_error_at = CASE WHEN last_error_at <= %(now)s THEN NULL ELSE last_error_at END "
    "WHERE id = %(id)s AND (last_run_at IS NULL OR last_run_at <= %(now)s)"
)
_RECORD_FAILURE = (
    "UPDATE search_subscriptions SET last_error = %(reason)s, last_error_at = %(now)s "
    "WHERE id = %(id)s AND (last_run_at IS NULL OR last_run_at <= %(now)s)"
)

_RESULT_TYPES = {
    "id": "uuid",
    "subscription_id": "uuid",
    "url": "text",
    "title": "text",
    "snippet": "text",
    "fingerprint": "text",
    "found_at": "timestamptz",
    "rank": "integer",
}
_RESULT_COLUMNS = tuple(_RESULT_TYPES)
# One statement for the whole batch; a fingerprint already stored (or repeated earlier in the
# batch) is skipped, and RETURNING tells which rows are new.
_INSERT_RESULTS = (
    f"INSERT INTO search_results ({columns(_RESULT_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%({c})s::{t}[]' for c, t in _RESULT_TYPES.items())}) "
    "ON CONFLICT (subscription_id, fingerprint) DO NOTHING RETURNING id"
)
_SELECT_RESULTS = f"SELECT {columns(_RESULT_COLUMNS)} FROM search_results"
# Newest run first, one run's results best first (served by search_results_ranked_idx). The
# cursor is a result's (found_at, id); its rank is read back (0 for a cursor of no result).
_RESULTS_AFTER = (
    "AND (found_at, -rank, id) < (%(at)s, -COALESCE((SELECT rank FROM search_results "
    "WHERE id = %(before_id)s), 0), %(before_id)s) "
)
_RESULTS_ORDER = "ORDER BY found_at DESC, rank, id DESC LIMIT %(limit)s"
_PAUSE_FOR_MEMBER = (
    "UPDATE search_subscriptions SET active = false, updated_at = %(now)s "
    "WHERE project_id = %(project_id)s AND user_id = %(user_id)s AND active"
)


def _page(
    params: dict[str, Any], before: tuple[datetime, UUID] | None, column: str, limit: int
) -> str:
    """The cursor condition and order of a newest-first page (``params`` gets its values)."""
    check_limit(limit)
    params["limit"] = limit
    after = ""
    if before is not None:
        params["at"], params["before_id"] = before
        after = f"AND ({column}, id) < (%(at)s, %(before_id)s) "
    return f"{after}ORDER BY {column} DESC, id DESC LIMIT %(limit)s"


class PostgresSearchSubscriptionRepository(PostgresRepository, SearchSubscriptionRepository):
    async def add(self, subscription: SearchSubscription) -> None:
        await self._run(_INSERT, msgspec.structs.asdict(subscription))

    async def get(self, subscription_id: UUID) -> SearchSubscription:
        row = await self._one(f"{_SELECT} WHERE id = %(id)s", {"id": subscription_id})
        if row is None:
            raise SearchSubscriptionNotFound()
        return msgspec.convert(row, SearchSubscription)

    async def get_for_update(self, subscription_id: UUID) -> SearchSubscription:
        row = await self._one(f"{_SELECT} WHERE id = %(id)s FOR UPDATE", {"id": subscription_id})
        if row is None:
            raise SearchSubscriptionNotFound()
        return msgspec.convert(row, SearchSubscription)

    async def update(self, subscription: SearchSubscription) -> None:
        if await self._run(_UPDATE, msgspec.structs.asdict(subscription)) == 0:
            raise SearchSubscriptionNotFound()

    async def delete(self, subscription_id: UUID) -> None:
        query = "DELETE FROM search_subscriptions WHERE id = %(id)s"
        if await self._run(query, {"id": subscription_id}) == 0:
            raise SearchSubscriptionNotFound()

    async def list_for_project(
        self, project_id: UUID, *, limit: int = 50, before: tuple[datetime, UUID] | None = None
    ) -> list[SearchSubscription]:
        params: dict[str, Any] = {"project_id": project_id}
        page = _page(params, before, "created_at", limit)
        rows = await self._all(f"{_SELECT} WHERE project_id = %(project_id)s {page}", params)
        return [msgspec.convert(r, SearchSubscription) for r in rows]

    async def count_active_for_user(self, user_id: UUID) -> int:
        row = await self._one(
            "SELECT count(*) AS n FROM search_subscriptions WHERE user_id = %(user_id)s AND active",
            {"user_id": user_id},
        )
        return 0 if row is None else int(row["n"])

    async def pause_for_member(self, project_id: UUID, user_id: UUID, now: datetime) -> int:
        params = {"project_id": project_id, "user_id": user_id, "now": now}
        return await self._run(_PAUSE_FOR_MEMBER, params)

    async def claim_due(self, now: datetime, *, limit: int = 100) -> list[SearchSubscription]:
        check_limit(limit)
        rows = await self._all(_CLAIM_DUE, {"now": now, "limit": limit})
        return [msgspec.convert(r, SearchSubscription) for r in rows]

    async def record_run(self, subscription_id: UUID, now: datetime) -> None:
        await self._run(_RECORD_RUN, {"id": subscription_id, "now": now})

    async def record_failure(self, subscription_id: UUID, now: datetime, reason: str) -> None:
        params = {"id": subscription_id, "now": now, "reason": reason[:LAST_ERROR_MAX]}
        await self._run(_RECORD_FAILURE, params)

    async def list_due(self, now: datetime, *, limit: int = 100) -> list[SearchSubscription]:
        check_limit(limit)
        rows = await self._all(_DUE, {"now": now, "limit": limit})
        return [msgspec.convert(r, SearchSubscription) for r in rows]

    async def add_results(self, results: list[SearchResult]) -> list[SearchResult]:
        if not results:
            return []
        params = {c: [getattr(r, c) for r in results] for c in _RESULT_COLUMNS}
        new = {row["id"] for row in await self._all(_INSERT_RESULTS, params)}
        return [r for r in results if r.id in new]

    async def list_results(
        self, subscription_id: UUID, *, limit: int = 50, before: tuple[datetime, UUID] | None = None
    ) -> list[SearchResult]:
        check_limit(limit)
        params: dict[str, Any] = {"id": subscription_id, "limit": limit}
        after = ""
        if before is not None:
            params["at"], params["before_id"] = before
            after = _RESULTS_AFTER
        rows = await self._all(
            f"{_SELECT_RESULTS} WHERE subscription_id = %(id)s {after}{_RESULTS_ORDER}", params
        )
        return [msgspec.convert(r, SearchResult) for r in rows]
