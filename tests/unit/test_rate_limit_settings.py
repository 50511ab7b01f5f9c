from __future__ import annotations

import pytest

from whalli.config import ConfigError, load_settings
from whalli.domain.services.rate_limits import RateLimit
from whalli.entrypoints.http.rate_limit import rate_limit_policy


def test_rate_limits_default_to_the_documented_budgets() -> None:
    policy = rate_limit_policy(load_settings({}, dotenv=None))

    assert policy.per_user == RateLimit(limit=100, window_seconds=60)
    assert policy.per_ip == RateLimit(limit=20, window_seconds=60)
    assert policy.login_per_account_ip == RateLimit(limit=5, window_seconds=60)
    assert policy.login_per_ip == RateLimit(limit=30, window_seconds=900)
    assert (policy.fail_open, policy.enabled) == (True, True)


def test_rate_limits_are_read_from_the_environment() -> None:
    settings = load_settings(
        {
            "WHALLI_RATE_LIMIT_USER_PER_MIN": "7",
            "WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP": "3/120",
            "WHALLI_RATE_LIMIT_FAIL_OPEN": "false",
            "WHALLI_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32",
        },
        dotenv=None,
    )
    policy = rate_limit_policy(settings)

    assert policy.per_user.limit == 7
    assert policy.login_per_account_ip == RateLimit(limit=3, window_seconds=120)
    assert policy.fail_open is False


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "WHALLI_RATE_LIMIT_IP_PER_MIN",
            "0",
            "WHALLI_RATE_LIMIT_IP_PER_MIN must be between 1 and 1048575",
        ),
        ("WHALLI_RATE_LIMIT_LOGIN_PER_IP", "30", "WHALLI_RATE_LIMIT_LOGIN_PER_IP must be COUNT/"),
        ("WHALLI_RATE_LIMIT_LOGIN_PER_IP", "0/60", "WHALLI_RATE_LIMIT_LOGIN_PER_IP must be COUNT/"),
        ("WHALLI_TRUSTED_PROXIES", "10.0.0.0/8, proxy", "WHALLI_TRUSTED_PROXIES must be a comma"),
    ],
)
def test_an_invalid_rate_limit_setting_names_its_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({variable: value}, dotenv=None)
