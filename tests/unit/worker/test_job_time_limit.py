"""A worker's job time limit leaves room for the longest job the settings allow: a transcription
within its timeout, an extraction within its wall time, each with its download."""

from __future__ import annotations

import pytest
from dramatiq.middleware import TimeLimit

from whalli.adapters.dramatiq.broker import DEFAULT_TIME_LIMIT_MS
from whalli.config import (
    EXTRACTION_JOB_MARGIN_S,
    TRANSCRIPTION_JOB_MARGIN_S,
    Secret,
    Settings,
    load_settings,
)
from whalli.entrypoints.worker.main import broker_for, job_time_limit_ms


def _time_limit_ms(settings: Settings) -> int:
    [limit] = [m for m in broker_for(settings).middleware if isinstance(m, TimeLimit)]
    return int(limit.time_limit)


def test_the_default_limit_covers_the_default_transcription_timeout() -> None:
    settings = Settings(env="test")

    assert job_time_limit_ms(settings) == DEFAULT_TIME_LIMIT_MS
    assert job_time_limit_ms(settings) >= settings.transcription_timeout_s * 1000


def test_the_default_limit_covers_the_default_extraction_wall_time_and_its_download() -> None:
    settings = Settings(env="test")

    assert job_time_limit_ms(settings) == DEFAULT_TIME_LIMIT_MS
    assert (
        job_time_limit_ms(settings)
        >= (settings.extraction_wall_time_s + EXTRACTION_JOB_MARGIN_S) * 1000
    )


def test_a_longer_transcription_timeout_raises_the_limit_with_room_for_the_download() -> None:
    settings = Settings(
        env="test", transcription_timeout_s=3600, extraction_processing_stale_after_s=4000
    )

    assert job_time_limit_ms(settings) == (3600 + TRANSCRIPTION_JOB_MARGIN_S) * 1000


def test_a_longer_extraction_wall_time_raises_the_limit_with_room_for_the_download() -> None:
    settings = Settings(env="test", extraction_wall_time_s=1800)

    assert job_time_limit_ms(settings) == (1800 + EXTRACTION_JOB_MARGIN_S) * 1000


def test_a_fractional_wall_time_is_rounded_up_to_the_millisecond() -> None:
    settings = Settings(env="test", extraction_wall_time_s=900.0004)

    assert job_time_limit_ms(settings) == 900_000 + EXTRACTION_JOB_MARGIN_S * 1000 + 1


def test_the_longer_of_the_two_jobs_sets_the_limit() -> None:
    extraction_longer = Settings(
        env="test", transcription_timeout_s=600, extraction_wall_time_s=2000
    )
    transcription_longer = Settings(
        env="test", transcription_timeout_s=2000, extraction_wall_time_s=600
    )

    assert job_time_limit_ms(extraction_longer) == (2000 + EXTRACTION_JOB_MARGIN_S) * 1000
    assert job_time_limit_ms(transcription_longer) == (2000 + TRANSCRIPTION_JOB_MARGIN_S) * 1000


def test_the_workers_broker_applies_it() -> None:
    settings = Settings(
        env="test", redis_url=Secret("redis://127.0.0.1:9/0"), transcription_timeout_s=1800,
        extraction_processing_stale_after_s=4000,
    )  # fmt: skip

    assert _time_limit_ms(settings) == (1800 + TRANSCRIPTION_JOB_MARGIN_S) * 1000


@pytest.mark.parametrize("wall_time_s", ["601", "900", "3600", "7200"])
def test_an_extraction_wall_time_start_up_accepts_ends_before_the_workers_job_time_limit(
    wall_time_s: str,
) -> None:
    """Otherwise Dramatiq interrupts the job first and the file fails with a generic error
    instead of the extraction's own wall-time one."""
    settings = load_settings(
        {"WHALLI_REDIS_URL": "redis://127.0.0.1:9/0", "WHALLI_EXTRACTION_WALL_TIME_S": wall_time_s},
        dotenv=None,
    )

    assert _time_limit_ms(settings) >= (float(wall_time_s) + EXTRACTION_JOB_MARGIN_S) * 1000


def test_a_running_transcription_job_is_not_stale_by_the_derived_threshold() -> None:
    for timeout_s in (300, 1800, 3600):
        settings = Settings(env="test", transcription_timeout_s=timeout_s)

        assert settings.processing_stale_after_s * 1000 > job_time_limit_ms(settings)


@pytest.mark.parametrize("wall_time_s", [60, 120, 600, 900, 1800, 3600, 7200.5])
def test_a_running_extraction_job_is_not_stale_by_the_derived_threshold(
    wall_time_s: float,
) -> None:
    settings = Settings(env="test", extraction_wall_time_s=wall_time_s)

    assert settings.processing_stale_after_s * 1000 > job_time_limit_ms(settings)
