"""Voice transcription settings: where audio goes and with which key, defaults, and invalid
values named by their variable; and the container's transcriber built from them."""

from __future__ import annotations

import httpx
import pytest

from whalli.adapters.ai.openai_transcriber import OpenAITranscriber
from whalli.config import ConfigError, load_settings
from whalli.container import build_transcriber

OPENAI_KEY = "sk-openai-0123456789"


def test_the_defaults_are_whisper_1_25_mb_and_off_without_any_key() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.transcription_model == "whisper-1"
    assert settings.transcription_max_bytes == 25 * 1024 * 1024
    assert settings.transcription_timeout_s == 300
    assert settings.transcription_endpoint is None


def test_with_the_openai_key_audio_goes_to_openai_with_it() -> None:
    settings = load_settings(
        {"WHALLI_OPENAI_API_KEY": OPENAI_KEY, "WHALLI_OPENAI_BASE_URL": "https://gw.example/v1"},
        dotenv=None,
    )
    assert settings.transcription_endpoint is not None
    url, key = settings.transcription_endpoint
    assert url == "https://gw.example/v1"
    assert key is not None
    assert key.reveal() == OPENAI_KEY


def test_a_self_hosted_server_needs_no_key_and_never_gets_the_openai_one() -> None:
    settings = load_settings(
        {"WHALLI_OPENAI_API_KEY": OPENAI_KEY,
         "WHALLI_TRANSCRIPTION_BASE_URL": "http://whisper.internal:8000/v1"},
        dotenv=None,
    )  # fmt: skip
    assert settings.transcription_endpoint == ("http://whisper.internal:8000/v1", None)


def test_a_transcription_key_of_its_own_is_sent_to_its_server() -> None:
    settings = load_settings(
        {"WHALLI_TRANSCRIPTION_BASE_URL": "https://speech.example/v1",
         "WHALLI_TRANSCRIPTION_API_KEY": " sk-speech-xyz \n"},
        dotenv=None,
    )  # fmt: skip
    assert settings.transcription_endpoint is not None
    url, key = settings.transcription_endpoint
    assert (url, key and key.reveal()) == ("https://speech.example/v1", "sk-speech-xyz")
    assert "sk-speech-xyz" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WHALLI_TRANSCRIPTION_BASE_URL", "whisper:8000", "WHALLI_TRANSCRIPTION_BASE_URL must"),
        ("WHALLI_TRANSCRIPTION_TIMEOUT_S", "0", "WHALLI_TRANSCRIPTION_TIMEOUT_S must be more"),
        ("WHALLI_TRANSCRIPTION_MAX_BYTES", "0", "WHALLI_TRANSCRIPTION_MAX_BYTES must be at least"),
        ("WHALLI_TRANSCRIPTION_MODEL", "  ", "WHALLI_TRANSCRIPTION_MODEL must not be empty"),
        ("WHALLI_TRANSCRIPTION_MAX_BYTES", "lots", "WHALLI_TRANSCRIPTION_MAX_BYTES"),
    ],
)
def test_an_invalid_value_names_its_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({variable: value}, dotenv=None)


def test_a_long_timeout_needs_an_explicit_stale_threshold_beyond_it_or_none() -> None:
    # unset, the threshold follows the timeout; set, it must exceed it
    assert load_settings({"WHALLI_TRANSCRIPTION_TIMEOUT_S": "900"}, dotenv=None)
    with pytest.raises(ConfigError, match="must exceed WHALLI_TRANSCRIPTION_TIMEOUT_S"):
        load_settings(
            {"WHALLI_TRANSCRIPTION_TIMEOUT_S": "900",
             "WHALLI_EXTRACTION_PROCESSING_STALE_AFTER_S": "900"},
            dotenv=None,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("limits", "refused_below", "named"),
    [
        ({"WHALLI_TRANSCRIPTION_TIMEOUT_S": "1800"}, 2100, "WHALLI_TRANSCRIPTION_TIMEOUT_S plus"),
        ({"WHALLI_EXTRACTION_WALL_TIME_S": "1000"}, 1300, "WHALLI_EXTRACTION_WALL_TIME_S plus"),
    ],
)
def test_an_explicit_stale_threshold_must_exceed_the_longest_job_with_its_download_margin(
    limits: dict[str, str], refused_below: int, named: str
) -> None:
    """A job may run its limit plus its download margin (the worker's time limit allows it):
    a threshold inside that margin would re-queue a file whose job is still running."""
    stale = "WHALLI_EXTRACTION_PROCESSING_STALE_AFTER_S"
    for inside in (refused_below - 299, refused_below):
        with pytest.raises(ConfigError, match=named) as refused:
            load_settings({**limits, stale: str(inside)}, dotenv=None)
        assert f"({refused_below} s" in str(refused.value)
    settings = load_settings({**limits, stale: str(refused_below + 1)}, dotenv=None)
    assert settings.processing_stale_after_s == refused_below + 1
    assert settings.processing_stale_after_s > settings.longest_job_s


async def test_the_container_builds_a_transcriber_only_when_one_is_configured() -> None:
    async with httpx.AsyncClient() as client:
        assert build_transcriber(load_settings({}, dotenv=None), client) is None
        on = load_settings({"WHALLI_TRANSCRIPTION_BASE_URL": "http://127.0.0.1:9/v1"}, dotenv=None)
        assert isinstance(build_transcriber(on, client), OpenAITranscriber)
