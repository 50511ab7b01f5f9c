"""A worker's job time limit leaves room for the longest transcription the settings allow."""

from __future__ import annotations

from dramatiq.middleware import TimeLimit

from whalli.adapters.dramatiq.broker import DEFAULT_TIME_LIMIT_MS
from whalli.config import Secret, Settings
from whalli.entrypoints.worker.main import (
    TRANSCRIPTION_JOB_MARGIN_S,
    broker_for,
    job_time_limit_ms,
)


def test_the_default_limit_covers_the_default_transcription_timeout() -> None:
    settings = Settings(env="test")

    assert job_time_limit_ms(settings) == DEFAULT_TIME_LIMIT_MS
    assert job_time_limit_ms(settings) >= settings.transcription_timeout_s * 1000


def test_a_longer_transcription_timeout_raises_the_limit_with_room_for_the_download() -> None:
    settings = Settings(
        env="test", transcription_timeout_s=3600, extraction_processing_stale_after_s=4000
    )

    assert job_time_limit_ms(settings) == (3600 + TRANSCRIPTION_JOB_MARGIN_S) * 1000


def test_the_workers_broker_applies_it() -> None:
    settings = Settings(
        env="test", redis_url=Secret("redis://127.0.0.1:9/0"), transcription_timeout_s=1800,
        extraction_processing_stale_after_s=4000,
    )  # fmt: skip

    [limit] = [m for m in broker_for(settings).middleware if isinstance(m, TimeLimit)]

    assert limit.time_limit == (1800 + TRANSCRIPTION_JOB_MARGIN_S) * 1000


def test_a_running_transcription_job_is_not_stale_by_the_derived_threshold() -> None:
    for timeout_s in (300, 1800, 3600):
        settings = Settings(env="test", transcription_timeout_s=timeout_s)

        assert settings.processing_stale_after_s * 1000 > job_time_limit_ms(settings)
