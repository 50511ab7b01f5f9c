"""The reply sweeper's settings: defaults, and invalid values named by their variable."""

from __future__ import annotations

import pytest

from whalli.config import ConfigError, load_settings


def test_the_reply_sweeper_defaults() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.reply_sweep_interval_s == 300
    assert settings.reply_abandoned_after_s == 900


def test_an_interval_of_zero_turns_the_reply_sweeper_off() -> None:
    settings = load_settings({"WHALLI_REPLY_SWEEP_INTERVAL_S": "0"}, dotenv=None)
    assert settings.reply_sweep_interval_s == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WHALLI_REPLY_SWEEP_INTERVAL_S", "-1", "WHALLI_REPLY_SWEEP_INTERVAL_S must not be"),
        ("WHALLI_REPLY_ABANDONED_AFTER_S", "0", "WHALLI_REPLY_ABANDONED_AFTER_S must be at least"),
        ("WHALLI_REPLY_ABANDONED_AFTER_S", "-5", "WHALLI_REPLY_ABANDONED_AFTER_S must be at least"),
        ("WHALLI_CHAT_HEARTBEAT_S", "0", "WHALLI_CHAT_HEARTBEAT_S must be more than 0"),
        ("WHALLI_CHAT_PROGRESS_EVERY_S", "-1", "WHALLI_CHAT_PROGRESS_EVERY_S must not be"),
        ("WHALLI_CHAT_HEARTBEAT_S", "3601", "WHALLI_CHAT_HEARTBEAT_S must be more than 0"),
    ],
)
def test_an_invalid_reply_sweeper_setting_names_its_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({variable: value}, dotenv=None)
