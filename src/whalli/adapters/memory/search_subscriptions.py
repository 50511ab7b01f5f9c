"""Recurring searches and their results, in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import msgspec

from whalli.adapters.memory._repository import MemoryRepository, check_limit
from whalli.domain.model.errors import SearchSubscriptionNotFound
from whalli.domain.model.searches import SearchResult, SearchSubscription
from whalli.ports.search_subscriptions import SearchSubscriptionRepository

_EPOCH, _MICROSECOND = datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)


class InMemorySearchSubscriptionRepository(MemoryRepository, SearchSubscriptionRepository):
    async def add(self, subscription: SearchSubscription) -> None:
        self._tx().insert("search_subscriptions", subscription.id, subscription)

    async def get(self, subscription_id: UUID) -> SearchSubscription:
        found: SearchSubscription = self._tx().get(
            "search_subscriptions", subscription_id, SearchSubscriptionNotFound
        )
        return found

    async def get_for_update(self, subscription_id: UUID) -> SearchSubscription:
        await self._tx().lock("search_subscriptions", subscription_id)
        return await self.get(subscription_id)

    async def update(self, subscription: SearchSubscription) -> None:
        self._tx().replace(
            "search_subscriptions", subscription.id, subscription, SearchSubscriptionNotFound
        )

    async def delete(self, subscription_id: UUID) -> None:
        self._tx().delete("search_subscriptions", subscription_id, SearchSubscriptionNotFound)

    async def list_for_project(
        self, project_id: UUID, *, limit: int = 50, before: tuple[datetime, UUID] | None = None
    ) -> list[SearchSubscription]:
        check_limit(limit)
        found: list[SearchSubscription] = self._tx().select(
            "search_subscriptions",
            lambda s: (
                s.project_id == project_id and (before is None or (s.created_at, s.id) < before)
            ),
        )
        return sorted(found, key=lambda s: (s.created_at, s.id), reverse=True)[:limit]

    async def count_active_for_user(self, user_id: UUID) -> int:
        return len(
            self._tx().select("search_subscriptions", lambda s: s.user_id == user_id and s.active)
        )

    async def pause_for_member(self, project_id: UUID, user_id: UUID, now: datetime) -> int:
        tx = self._tx()
        found: list[SearchSubscription] = tx.select(
            "search_subscriptions",
            lambda s: s.project_id == project_id and s.user_id == user_id and s.active,
        )
        for subscription in found:
            paused = msgspec.structs.replace(subscription, active=False, updated_at=now)
            tx.replace("search_subscriptions", paused.id, paused, SearchSubscriptionNotFound)
        return len(found)

    async def claim_due(self, now: datetime, *, limit: int = 100) -> list[SearchSubscription]:
        check_limit(limit)
        tx = self._tx()
        found: list[SearchSubscription] = tx.select("search_subscriptions", lambda s: s.is_due(now))
        claimed: list[SearchSubscription] = []
        for due in sorted(found, key=lambda s: (s.next_run_at, s.id)):
            if len(claimed) == limit:
                break
            if not await tx.try_lock("search_subscriptions", due.id):
                continue
            latest: SearchSubscription | None = tx.find("search_subscriptions", due.id)
            if latest is None or not latest.is_due(now):
                continue
            latest.claim(now)
            tx.replace("search_subscriptions", latest.id, latest, SearchSubscriptionNotFound)
            claimed.append(latest)
        return claimed

    async def record_run(self, subscription_id: UUID, now: datetime) -> None:
        tx = self._tx()
        await tx.lock("search_subscriptions", subscription_id)  # as UPDATE waits for a row lock
        found: SearchSubscription | None = tx.find("search_subscriptions", subscription_id)
        if found is not None:
            found.record_run(now)
            tx.replace("search_subscriptions", found.id, found, SearchSubscriptionNotFound)

    async def record_failure(self, subscription_id: UUID, now: datetime, reason: str) -> None:
        tx = self._tx()
        await tx.lock("search_subscriptions", subscription_id)
        found: SearchSubscription | None = tx.find("search_subscriptions", subscription_id)
        if found is not None:
            found.record_failure(now, reason)
            tx.replace("search_subscriptions", found.id, found, SearchSubscriptionNotFound)

    async def list_due(self, now: datetime, *, limit: int = 100) -> list[SearchSubscription]:
        check_limit(limit)
        found: list[SearchSubscription] = self._tx().select(
            "search_subscriptions", lambda s: s.active and s.next_run_at <= now
        )
        return sorted(found, key=lambda s: (s.next_run_at, s.id))[:limit]

    async def add_results(self, results: list[SearchResult]) -> list[SearchResult]:
        tx, new = self._tx(), []
        seen = {(r.subscription_id, r.fingerprint) for r in tx.table("search_results").values()}
        for result in results:
            identity = (result.subscription_id, result.fingerprint)
            if identity not in seen:
                tx.insert("search_results", result.id, result)
                seen.add(identity)
                new.append(result)
        return new

    async def list_results(
        self, subscription_id: UUID, *, limit: int = 50, before: tuple[datetime, UUID] | None = None
    ) -> list[SearchResult]:
        check_limit(limit)
        tx = self._tx()
        found: list[SearchResult] = tx.select(
            "search_results", lambda r: r.subscription_id == subscription_id
        )
        found.sort(key=_newest_first)
        if before is not None:
            at, before_id = before
            cursor: SearchResult | None = tx.find("search_results", before_id)
            rank = 0 if cursor is None else cursor.rank
            start = _newest_first_key(at, rank, before_id)
            found = [r for r in found if _newest_first(r) > start]
        return found[:limit]


def _newest_first(result: SearchResult) -> tuple[int, int, int]:
    return _newest_first_key(result.found_at, result.rank, result.id)


def _newest_first_key(found_at: datetime, rank: int, id: UUID) -> tuple[int, int, int]:
    return (-((found_at - _EPOCH) // _MICROSECOND), rank, -id.int)
