"""Usage records, in memory."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.ports.usage import UsageRecord, UsageRepository, UsageTotals


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
