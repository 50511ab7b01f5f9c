"""What replies cost and how they were rated: /api/usage (the caller's own),
/api/admin/users/{id}/usage and /api/admin/feedback (admins, signed in: not with an API key)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from whalli.domain.model.principal import Principal
from whalli.domain.services.admin.summarize_feedback import (
    SummarizeFeedback,
    SummarizeFeedbackHandler,
)
from whalli.domain.services.usage import summarize_usage as model
from whalli.domain.services.usage.summarize_usage import SummarizeUsage, SummarizeUsageHandler
from whalli.entrypoints.http.schemas import Schema
from whalli.entrypoints.http.security import SESSION_ONLY

Since = Annotated[
    date | None,
    QueryParameter(name="from", description="First day, UTC (default: 29 days before `to`)"),
]
Until = Annotated[
    date | None, QueryParameter(name="to", description="Last day, included, UTC (default: today)")
]


class Figures(Schema):
    requests: int
    cached_requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    # of the prompt tokens, read from / written to the providers' prompt caches
    cached_prompt_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int  # of the completion tokens, the models' hidden reasoning
    audio_seconds: float  # of audio transcribed (voice messages, /v1/audio/transcriptions)


class ModelUsage(Figures):
    model: str
    provider: str


class DayUsage(Figures):
    day: date


class ModelRatings(Schema):
    model: str
    up: int
    down: int
    comments: int


class FeedbackSummary(Schema):
    since: date = msgspec.field(name="from")
    until: date = msgspec.field(name="to")
    by_model: list[ModelRatings]


class UsageSummary(Schema):
    since: date = msgspec.field(name="from")
    until: date = msgspec.field(name="to")
    total: Figures
    by_model: list[ModelUsage]
    by_day: list[DayUsage]


F = TypeVar("F", bound=Figures)


def _row(kind: type[F], f: model.UsageFigures, **key: Any) -> F:
    return kind(
        requests=f.requests, cached_requests=f.cached_requests, prompt_tokens=f.prompt_tokens,
        completion_tokens=f.completion_tokens, cost_usd=round(f.cost_usd, 6),
        cached_prompt_tokens=f.cached_prompt_tokens, cache_write_tokens=f.cache_write_tokens,
        reasoning_tokens=f.reasoning_tokens, audio_seconds=round(f.audio_seconds, 3),
        **key,
    )  # fmt: skip


def _summary(s: model.UsageSummary) -> UsageSummary:
    return UsageSummary(
        since=s.since, until=s.until, total=_row(Figures, s.total),
        by_model=[_row(ModelUsage, m.figures, model=m.model, provider=m.provider)
                  for m in s.by_model],
        by_day=[_row(DayUsage, d.figures, day=d.day) for d in s.by_day],
    )  # fmt: skip


class UsageController(Controller):
    tags = ["usage"]

    @get(
        "/api/usage", summary="The caller's usage: totals, per model and per day",
        description="Every reply counts (streamed, cached, stopped or failed; `/v1` too), and "
        "every transcription (its cost, and its seconds of audio in `audioSeconds`). Days "
        "are UTC; at most 366 of them.",
    )  # fmt: skip
    async def mine(
        self,
        principal: NamedDependency[Principal],
        summarize_usage: NamedDependency[SummarizeUsageHandler],
        since: Since = None,
        until: Until = None,
    ) -> UsageSummary:
        command = SummarizeUsage(
            caller_id=principal.user_id, user_id=principal.user_id, since=since, until=until
        )
        return _summary(await summarize_usage.execute(command))

    @get(
        "/api/admin/users/{user_id:uuid}/usage", opt=SESSION_ONLY,
        summary="An account's usage (admins; not with an API key)",
        description="The same summary as `GET /api/usage`, for any account.",
    )  # fmt: skip
    async def of_user(
        self,
        principal: NamedDependency[Principal],
        summarize_usage: NamedDependency[SummarizeUsageHandler],
        user_id: FromPath[UUID],
        since: Since = None,
        until: Until = None,
    ) -> UsageSummary:
        command = SummarizeUsage(
            caller_id=principal.user_id, user_id=user_id, since=since, until=until,
            api_key_id=principal.api_key_id, as_admin=True,
        )  # fmt: skip
        return _summary(await summarize_usage.execute(command))

    @get(
        "/api/admin/feedback", opt=SESSION_ONLY,
        summary="How readers rated each model's replies (admins; not with an API key)",
        description="Ratings given or changed in the range (UTC days), counted per model: "
        "up, down, and how many came with a comment. No comment text, no reader.",
    )  # fmt: skip
    async def feedback(
        self,
        principal: NamedDependency[Principal],
        summarize_feedback: NamedDependency[SummarizeFeedbackHandler],
        since: Since = None,
        until: Until = None,
    ) -> FeedbackSummary:
        command = SummarizeFeedback(
            admin_id=principal.user_id, since=since, until=until,
            api_key_id=principal.api_key_id,
        )  # fmt: skip
        summary = await summarize_feedback.execute(command)
        return FeedbackSummary(
            since=summary.since, until=summary.until,
            by_model=[
                ModelRatings(model=m.model, up=m.up, down=m.down, comments=m.comments)
                for m in summary.by_model
            ],
        )  # fmt: skip
