"""Usage records, in memory."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.ports.usage import UsageDay, UsageRecord, UsageRepository, UsageTotals


class InMemoryUsageRepository(MemoryRepository, UsageRepository):
    async def add(self, record: UsageRecord) -> None:
        self._tx().insert("usage_records", record.id, record)

    async def totals(
        self, user_id: UUID, *, since: datetime, model: str | None = None
    ) -> UsageTotals:
        found: list[UsageRecord] = self._tx().select(
            "usage_records",
            lambda r: (
                r.user_id == user_id
                and r.created_at >= since
                and (model is None or r.model == model)
            ),
        )
        return UsageTotals(
            requests=len(found),
            prompt_tokens=sum(r.prompt_tokens for r in found),
            completion_tokens=sum(r.completion_tokens for r in found),
            cost_usd=sum((r.cost_usd for r in found), 0.0),
        )

    async def daily(self, user_id: UUID, *, since: datetime, until: datetime) -> list[UsageDay]:
        found: list[UsageRecord] = self._tx().select(
            "usage_records", lambda r: r.user_id == user_id and since <= r.created_at < until
        )
        groups: dict[tuple[date, str, str], list[UsageRecord]] = {}
        for r in found:
            key = (r.created_at.astimezone(UTC).date(), r.model, r.provider)
            groups.setdefault(key, []).append(r)
        return [
            UsageDay(
                day=day,
                model=model,
                provider=provider,
                requests=len(rs),
                cached_requests=sum(r.cached for r in rs),
                prompt_tokens=sum(r.prompt_tokens for r in rs),
                completion_tokens=sum(r.completion_tokens for r in rs),
                cost_usd=sum((r.cost_usd for r in rs), 0.0),
                cached_prompt_tokens=sum(r.cached_prompt_tokens for r in rs),
                cache_write_tokens=sum(r.cache_write_tokens for r in rs),
                reasoning_tokens=sum(r.reasoning_tokens for r in rs),
                audio_seconds=sum((r.audio_seconds for r in rs), 0.0),
            )
            for (day, model, provider), rs in sorted(groups.items())
        ]
