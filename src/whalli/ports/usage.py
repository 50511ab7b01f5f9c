"""Usage records: tokens and cost per user and model, streamed requests and transcriptions
included."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.base import Value
from whalli.domain.model.chats import TokenUsage


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
    # of the prompt tokens, read from / written to the provider's prompt cache
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # of the completion tokens, the model's hidden reasoning
    audio_seconds: float = 0.0  # of audio transcribed (a transcription's record)

    @classmethod
    def of(cls, usage: TokenUsage, **fields: object) -> UsageRecord:
        """The record of a call that used ``usage`` (its token counts), with ``fields``."""
        return cls(
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            cached_prompt_tokens=usage.cached_prompt_tokens,
            cache_write_tokens=usage.cache_write_tokens, reasoning_tokens=usage.reasoning_tokens,
            **fields,  # type: ignore[arg-type]
        )  # fmt: skip


class UsageTotals(Value, frozen=True, kw_only=True):
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class UsageDay(Value, frozen=True, kw_only=True):
    """A user's usage of one model on one UTC day."""

    day: date
    model: str
    provider: str
    requests: int
    cached_requests: int  # of which answered from the prompt cache
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    # of the prompt tokens, read from / written to the providers' prompt caches
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # of the completion tokens, the models' hidden reasoning
    audio_seconds: float = 0.0  # of audio transcribed


class UsageRepository(Protocol):
    async def add(self, record: UsageRecord) -> None:
        """One statement (atomic by itself: may run in ``UnitOfWork.autocommit``)."""
        ...

    async def totals(
        self, user_id: UUID, *, since: datetime, model: str | None = None
    ) -> UsageTotals:
        """Sums over the user's records at or after ``since`` (optionally for one model)."""
        ...

    async def daily(self, user_id: UUID, *, since: datetime, until: datetime) -> list[UsageDay]:
        """The user's records from ``since`` up to (not including) ``until``, summed per UTC
        day and model, ordered by day, then model."""
        ...
