import pytest

from whalli.config import ConfigError, load_settings


def test_identity_settings_have_safe_defaults() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.jwt_secret is None
    assert (settings.jwt_issuer, settings.jwt_audience) == ("whalli", "whalli-api")
    assert settings.access_token_ttl_s == 900
    assert settings.refresh_token_ttl_days == 30
    assert (settings.password_hash_memory_kib, settings.password_hash_time_cost) == (19456, 2)


def test_a_jwt_secret_of_32_bytes_is_accepted_and_kept_secret() -> None:
    settings = load_settings({"WHALLI_JWT_SECRET": "j" * 32}, dotenv=None)
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.reveal() == "j" * 32
    assert "j" * 32 not in repr(settings)


def test_a_jwt_secret_shorter_than_32_bytes_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="WHALLI_JWT_SECRET must be at least 32 bytes") as info:
        load_settings({"WHALLI_JWT_SECRET": "hunter2-hunter2"}, dotenv=None)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WHALLI_JWT_ISSUER", " "),
        ("WHALLI_JWT_AUDIENCE", " "),
        ("WHALLI_ACCESS_TOKEN_TTL_S", "59"),
        ("WHALLI_ACCESS_TOKEN_TTL_S", "3601"),
        ("WHALLI_REFRESH_TOKEN_TTL_DAYS", "0"),
        ("WHALLI_REFRESH_TOKEN_TTL_DAYS", "366"),
        ("WHALLI_REFRESH_TOKEN_REUSE_GRACE_S", "-1"),
        ("WHALLI_REFRESH_TOKEN_REUSE_GRACE_S", "61"),
        ("WHALLI_PASSWORD_HASH_MEMORY_KIB", "19455"),
        ("WHALLI_PASSWORD_HASH_TIME_COST", "1"),
        ("WHALLI_PWNED_PASSWORDS_URL", "api.pwnedpasswords.com"),
        ("WHALLI_PWNED_PASSWORDS_URL", "ftp://api.pwnedpasswords.com"),
        ("WHALLI_PWNED_PASSWORDS_TIMEOUT_S", "0"),
        ("WHALLI_PWNED_PASSWORDS_TIMEOUT_S", "31"),
    ],
)
def test_an_out_of_bounds_identity_setting_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: value}, dotenv=None)


def test_the_argon2_cost_can_be_raised() -> None:
    settings = load_settings(
        {"WHALLI_PASSWORD_HASH_MEMORY_KIB": "65536", "WHALLI_PASSWORD_HASH_TIME_COST": "3"},
        dotenv=None,
    )
    assert (settings.password_hash_memory_kib, settings.password_hash_time_cost) == (65536, 3)


def test_the_breached_password_service_is_off_unless_a_url_is_set() -> None:
    default = load_settings({}, dotenv=None)
    assert (default.pwned_passwords_url, default.pwned_passwords_timeout_s) == ("", 2.0)

    on = load_settings(
        {
            "WHALLI_PWNED_PASSWORDS_URL": "https://api.pwnedpasswords.com",
            "WHALLI_PWNED_PASSWORDS_TIMEOUT_S": "1.5",
        },
        dotenv=None,
    )
    assert (on.pwned_passwords_url, on.pwned_passwords_timeout_s) == (
        "https://api.pwnedpasswords.com",
        1.5,
    )


def test_a_zero_breached_password_timeout_is_refused_by_a_message_that_says_so() -> None:
    with pytest.raises(ConfigError, match="TIMEOUT_S must be more than 0 and at most 30"):
        load_settings({"WHALLI_PWNED_PASSWORDS_TIMEOUT_S": "0"}, dotenv=None)
