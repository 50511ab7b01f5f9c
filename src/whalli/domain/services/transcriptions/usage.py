"""What a transcription used: its usage record and its metrics, for both transcription paths (an
audio attachment's background transcription, ``/v1/audio/transcriptions``)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.domain.model.errors import (
    ProviderError,
    ProviderRejectedRequest,
    ServiceUnavailable,
    WhalliError,
)
from whalli.domain.model.transcription_models import TranscriptionModel, TranscriptionUsage
from whalli.ports.transcription_metrics import TranscriptionMetrics
from whalli.ports.usage import UsageRecord


def usage_record(
    model: TranscriptionModel, usage: TranscriptionUsage, *, record_id: UUID, user_id: UUID,
    now: datetime,
) -> UsageRecord:  # fmt: skip
    """The user's usage record of one completed transcription: priced by the catalog (a model
    it does not list costs 0), its tokens where the provider counted tokens (input text and
    audio as prompt tokens, the transcript as completion tokens), its seconds of audio."""
    return UsageRecord(
        id=record_id, user_id=user_id, message_id=None, model=model.name,
        provider=model.provider, prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens, cost_usd=model.cost_usd(usage), cached=False,
        created_at=now, audio_seconds=usage.seconds,
    )  # fmt: skip


def outcome_of(error: BaseException) -> str:
    """The metrics outcome of a transcription that raised ``error``: ``refused`` when a rule
    refused it, the request being at fault (any domain error but a provider's failure: the
    plan, a disabled account, an unknown model, the file's size or type, a field, or the
    provider refusing the audio itself as invalid); ``failed`` when the provider failed
    (unavailable, rate limiting, a rejected key) or anything unforeseen did."""
    if isinstance(error, ProviderRejectedRequest):
        return "refused"
    if isinstance(error, ProviderError | ServiceUnavailable):
        return "failed"
    return "refused" if isinstance(error, WhalliError) else "failed"


def report(
    metrics: TranscriptionMetrics | None, model: TranscriptionModel, outcome: str,
    usage: TranscriptionUsage | None = None,
) -> None:  # fmt: skip
    if metrics is not None:
        seconds = usage.seconds if usage is not None else 0.0
        metrics.transcribed(model=model.name, outcome=outcome, audio_seconds=seconds)
