"""The extraction worker's settings: defaults, and invalid values named by their variable."""

from __future__ import annotations

import pytest

from whalli.config import ConfigError, load_settings


def test_the_extraction_defaults() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.ocr_languages == "eng"
    assert settings.extraction_max_chars == 1_000_000
    assert settings.extraction_wall_time_s == 120
    assert settings.extraction_memory_mb == 1024
    assert settings.extraction_sweep_interval_s == 60
    assert settings.chat_attachment_wait_s == 5
    assert settings.job_max_deliveries == 3
    assert settings.file_events_poll_s == 0.5
    assert settings.file_events_max_lifetime_s == 600


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WHALLI_OCR_LANGUAGES", "eng; rm -rf", "WHALLI_OCR_LANGUAGES must look like"),
        ("WHALLI_EXTRACTION_MAX_CHARS", "0", "WHALLI_EXTRACTION_MAX_CHARS must be at least 1"),
        ("WHALLI_EXTRACTION_WALL_TIME_S", "0", "WHALLI_EXTRACTION_WALL_TIME_S must be more"),
        ("WHALLI_EXTRACTION_SWEEP_INTERVAL_S", "-1", "WHALLI_EXTRACTION_SWEEP_INTERVAL_S must"),
        ("WHALLI_EXTRACTION_PROCESSING_STALE_AFTER_S", "60", "must exceed WHALLI_EXTRACTION_WALL"),
        ("WHALLI_CHAT_ATTACHMENT_WAIT_S", "600", "WHALLI_CHAT_ATTACHMENT_WAIT_S must be between"),
        ("WHALLI_JOB_MAX_DELIVERIES", "0", "WHALLI_JOB_MAX_DELIVERIES must be at least 1"),
        ("WHALLI_WORKER_MAINTENANCE_CHANCE", "2000000", "WHALLI_WORKER_MAINTENANCE_CHANCE must"),
        ("WHALLI_FILE_EVENTS_POLL_S", "0", "WHALLI_FILE_EVENTS_POLL_S must be more than 0"),
        ("WHALLI_FILE_EVENTS_MAX_LIFETIME_S", "-1", "WHALLI_FILE_EVENTS_MAX_LIFETIME_S must be"),
    ],
)
def test_an_invalid_extraction_setting_names_its_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({variable: value}, dotenv=None)


@pytest.mark.parametrize(
    ("environ", "stale_after_s"),
    [
        ({}, 900),
        ({"WHALLI_TRANSCRIPTION_TIMEOUT_S": "1800"}, 1800 + 300 + 300),
        ({"WHALLI_TRANSCRIPTION_TIMEOUT_S": "3600"}, 3600 + 300 + 300),
        ({"WHALLI_TRANSCRIPTION_TIMEOUT_S": "600.5"}, 901 + 300),  # whole seconds, rounded up
        # an extraction job: the wall time, its download margin, then the stale margin
        ({"WHALLI_EXTRACTION_WALL_TIME_S": "900"}, 900 + 300 + 300),
        ({"WHALLI_EXTRACTION_WALL_TIME_S": "300"}, 900),
        ({"WHALLI_EXTRACTION_WALL_TIME_S": "300.5"}, 601 + 300),  # whole seconds, rounded up
        ({"WHALLI_EXTRACTION_WALL_TIME_S": "60"}, 900),
    ],
)
def test_unset_the_processing_stale_threshold_stays_beyond_the_longest_running_job(
    environ: dict[str, str], stale_after_s: int
) -> None:
    settings = load_settings(environ, dotenv=None)

    assert settings.extraction_processing_stale_after_s is None
    assert settings.processing_stale_after_s == stale_after_s


def test_an_explicit_processing_stale_threshold_is_kept_as_given() -> None:
    settings = load_settings({"WHALLI_EXTRACTION_PROCESSING_STALE_AFTER_S": "7200"}, dotenv=None)

    assert settings.processing_stale_after_s == 7200


def test_an_explicit_processing_stale_threshold_must_exceed_the_transcription_timeout() -> None:
    environ = {
        "WHALLI_TRANSCRIPTION_TIMEOUT_S": "1800",
        "WHALLI_EXTRACTION_PROCESSING_STALE_AFTER_S": "1800",
    }
    with pytest.raises(ConfigError, match="must exceed WHALLI_TRANSCRIPTION_TIMEOUT_S"):
        load_settings(environ, dotenv=None)
