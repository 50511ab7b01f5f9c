"""Usage records: tokens and cost per user and model, streamed requests included."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.base import Value


class UsageRecord(Value, frozen=True, kw_only=True):
    id: UUID
    user_id: UUID
    message_id: UUID | None
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    created_at: datetime


class UsageTotals(Value, frozen=True, kw_only=True):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class UsageRepository(Protocol):
    async def add(self, record: UsageRecord) -> None:
        """One statement (atomic by itself: may run in ``UnitOfWork.autocommit``)."""
        ...

    async def totals(
        self, user_id: UUID, *, since: datetime, model: str | None = None
    ) -> UsageTotals:
        """Sums over the user's records at or after ``since`` (optionally for one model)."""
        ...
