from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.config import ConfigError, Secret, load_settings, read_dotenv, redact_url
from whalli.container import build_container, principal_cache_for


def test_defaults_apply_when_nothing_is_set() -> None:
    settings = load_settings({}, dotenv=None)
    assert settings.port == 3001
    assert settings.database_url is None
    assert settings.uses_embedded_services


def test_environment_values_are_typed() -> None:
    settings = load_settings(
        {"WHALLI_PORT": "8080", "WHALLI_S3_SECURE": "true", "WHALLI_LOG_LEVEL": "debug"},
        dotenv=None,
    )
    assert settings.port == 8080
    assert settings.s3_secure is True
    assert settings.log_level == "debug"


def test_an_invalid_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="WHALLI_PORT"):
        load_settings({"WHALLI_PORT": "eighty"}, dotenv=None)


def test_an_out_of_range_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="WHALLI_PORT must be between"):
        load_settings({"WHALLI_PORT": "70000"}, dotenv=None)


@pytest.mark.parametrize("root", ["/whalli", "/apps/whalli-1", "/a.b/c~d"])
def test_a_root_path_is_a_plain_path(root: str) -> None:
    assert load_settings({}, dotenv=None).root_path == ""
    assert load_settings({"WHALLI_ROOT_PATH": root}, dotenv=None).root_path == root


@pytest.mark.parametrize(
    "root", ["whalli", "/whalli/", "/", "//whalli", "/wh alli", "/a?b", "/a#b", "/..", "/a/./b"]
)
def test_a_root_path_that_is_not_a_plain_path_is_refused(root: str) -> None:
    with pytest.raises(ConfigError, match="WHALLI_ROOT_PATH must be a path"):
        load_settings({"WHALLI_ROOT_PATH": root}, dotenv=None)


def test_chat_starts_run_two_at_a_time_by_default_and_the_gate_is_bounded() -> None:
    settings = load_settings({}, dotenv=None)
    assert (settings.chat_start_slots, settings.chat_start_max_wait_s) == (2, 0.025)
    off = load_settings({"WHALLI_CHAT_START_SLOTS": "0"}, dotenv=None)
    assert off.chat_start_slots == 0
    with pytest.raises(ConfigError, match="WHALLI_CHAT_START_SLOTS must be between 0 and 1000"):
        load_settings({"WHALLI_CHAT_START_SLOTS": "-1"}, dotenv=None)
    with pytest.raises(ConfigError, match="WHALLI_CHAT_START_MAX_WAIT_S must be between"):
        load_settings({"WHALLI_CHAT_START_MAX_WAIT_S": "11"}, dotenv=None)


def test_the_api_key_last_use_interval_defaults_to_a_minute_and_is_bounded() -> None:
    assert load_settings({}, dotenv=None).api_key_last_used_interval_s == 60
    with pytest.raises(ConfigError, match="WHALLI_API_KEY_LAST_USED_INTERVAL_S must be between"):
        load_settings({"WHALLI_API_KEY_LAST_USED_INTERVAL_S": "-1"}, dotenv=None)


def test_the_credential_cache_defaults_to_five_seconds_is_bounded_and_can_be_off() -> None:
    assert load_settings({}, dotenv=None).credential_cache_s == 5
    assert principal_cache_for(5) is not None
    assert principal_cache_for(0) is None  # off: the database is read on every request
    for value in ("-1", "61"):
        with pytest.raises(ConfigError, match="WHALLI_CREDENTIAL_CACHE_S must be between 0 and 60"):
            load_settings({"WHALLI_CREDENTIAL_CACHE_S": value}, dotenv=None)


def test_with_the_credential_cache_off_authentication_remembers_nothing() -> None:
    container = build_container(load_settings({"WHALLI_CREDENTIAL_CACHE_S": "0"}, dotenv=None))
    assert container.services.principal_cache() is None


def test_a_bad_choice_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="WHALLI_LOG_LEVEL"):
        load_settings({"WHALLI_LOG_LEVEL": "loud"}, dotenv=None)
    with pytest.raises(ConfigError, match="WHALLI_ANTHROPIC_PROMPT_CACHE_TTL"):
        load_settings({"WHALLI_ANTHROPIC_PROMPT_CACHE_TTL": "2h"}, dotenv=None)
    with pytest.raises(ConfigError, match="WHALLI_DATABASE_IO_TIMEOUT_S must be more than 0"):
        load_settings({"WHALLI_DATABASE_IO_TIMEOUT_S": "0"}, dotenv=None)
    with pytest.raises(ConfigError, match="WHALLI_DATABASE_ACQUIRE_TIMEOUT_S"):
        load_settings({"WHALLI_DATABASE_ACQUIRE_TIMEOUT_S": "-1"}, dotenv=None)
    hour = load_settings({"WHALLI_ANTHROPIC_PROMPT_CACHE_TTL": "1h"}, dotenv=None)
    assert hour.anthropic_prompt_cache_ttl == "1h"


def test_an_s3_endpoint_needs_its_keys() -> None:
    with pytest.raises(ConfigError, match="WHALLI_S3_ACCESS_KEY"):
        load_settings({"WHALLI_S3_ENDPOINT": "http://s3:9000"}, dotenv=None)


@pytest.mark.parametrize(
    "url",
    ["storage.example.com", "ftp://storage.example.com", "https://x.example/bucket", "https://"],
)
def test_an_s3_public_url_is_an_http_origin(url: str) -> None:
    with pytest.raises(ConfigError, match="WHALLI_S3_PUBLIC_URL"):
        load_settings({"WHALLI_S3_PUBLIC_URL": url}, dotenv=None)
    public = load_settings({"WHALLI_S3_PUBLIC_URL": "https://storage.example.com"}, dotenv=None)
    assert public.s3_public_url == "https://storage.example.com"


@pytest.mark.parametrize(
    "name", ["WHALLI_CHAT_SESSION_TTL_S", "WHALLI_CHAT_STREAM_TTL_S", "WHALLI_CHAT_CACHE_TTL_S"]
)
def test_a_chat_lifetime_below_one_second_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be at least 1"):
        load_settings({name: "0"}, dotenv=None)


def test_a_reply_stream_outlives_its_session() -> None:
    with pytest.raises(ConfigError, match="CHAT_STREAM_TTL_S must be at least"):
        load_settings(
            {"WHALLI_CHAT_SESSION_TTL_S": "600", "WHALLI_CHAT_STREAM_TTL_S": "300"}, dotenv=None
        )
    same = {"WHALLI_CHAT_SESSION_TTL_S": "300", "WHALLI_CHAT_STREAM_TTL_S": "300"}
    assert load_settings(same, dotenv=None).chat_stream_ttl_s == 300


def test_secrets_never_show_in_repr_or_errors() -> None:
    settings = load_settings(
        {
            "WHALLI_DATABASE_URL": "postgresql://u:hunter2@db/whalli",
            "WHALLI_METRICS_TOKEN": "tok-s3cr3t",
        },
        dotenv=None,
    )
    assert "hunter2" not in repr(settings)
    assert "tok-s3cr3t" not in repr(settings)
    assert settings.database_url is not None
    assert settings.database_url.reveal() == "postgresql://u:hunter2@db/whalli"


def test_an_invalid_secret_setting_does_not_echo_the_value() -> None:
    with pytest.raises(ConfigError, match="WHALLI_PORT") as info:
        load_settings({"WHALLI_PORT": "hunter2"}, dotenv=None)
    assert "hunter2" not in str(info.value)


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nWHALLI_PORT=4000\nexport WHALLI_HOST='0.0.0.0'\nWHALLI_LOG_LEVEL=\"warning\"\n"
    )
    assert read_dotenv(dotenv)["WHALLI_HOST"] == "0.0.0.0"
    settings = load_settings({"WHALLI_PORT": "5000"}, dotenv=dotenv)
    assert settings.port == 5000
    assert settings.host == "0.0.0.0"
    assert settings.log_level == "warning"


def test_redact_url_drops_only_the_password() -> None:
    assert redact_url("redis://:pw@127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


@given(st.text(min_size=1))
def test_a_secret_reveals_exactly_what_it_holds_and_hides_it_otherwise(value: str) -> None:
    secret = Secret(value)
    assert secret.reveal() == value
    assert repr(secret) == "Secret('**********')"
    assert str(secret) == repr(secret)


def test_a_rate_limit_beyond_what_the_limiter_can_count_is_refused() -> None:
    with pytest.raises(ConfigError, match="WHALLI_RATE_LIMIT_USER_PER_MIN must be between"):
        load_settings({"WHALLI_RATE_LIMIT_USER_PER_MIN": "2000000"}, dotenv=None)


def test_the_http_keep_alive_outlasts_the_proxys_idle_timeout_and_is_at_least_a_second() -> None:
    assert load_settings({}, dotenv=None).http_keep_alive_s == 120  # Traefik's is 90 s
    assert load_settings({"WHALLI_HTTP_KEEP_ALIVE_S": "300"}, dotenv=None).http_keep_alive_s == 300
    with pytest.raises(ConfigError, match="WHALLI_HTTP_KEEP_ALIVE_S must be at least 1"):
        load_settings({"WHALLI_HTTP_KEEP_ALIVE_S": "0"}, dotenv=None)


@pytest.mark.parametrize(
    ("missing", "message"),
    [("WHALLI_JWT_SECRET", "JWT_SECRET is required in production"),
     ("WHALLI_METRICS_TOKEN", "METRICS_TOKEN is required in production")],
)  # fmt: skip
def test_production_refuses_to_start_without_its_secrets(missing: str, message: str) -> None:
    env = {
        "WHALLI_ENV": "production", "WHALLI_JWT_SECRET": "p" * 40,
        "WHALLI_METRICS_TOKEN": "m" * 32,
    }  # fmt: skip
    assert load_settings(env, dotenv=None).metrics_token is not None
    with pytest.raises(ConfigError, match=message):
        load_settings({k: v for k, v in env.items() if k != missing}, dotenv=None)


def test_a_secret_loses_the_whitespace_around_it() -> None:
    """A key pasted with a space, or read from a file with its newline, would break every
    request's headers: the whitespace around a secret is never part of it."""
    settings = load_settings(
        {"WHALLI_OPENAI_API_KEY": " sk-abc\n", "WHALLI_METRICS_TOKEN": "\ttok en\r\n"},
        dotenv=None,
    )
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.reveal() == "sk-abc"
    assert settings.metrics_token is not None
    assert settings.metrics_token.reveal() == "tok en"


@pytest.mark.parametrize("token", ["", "   ", "short-token", " " + "x" * 15 + "\n"])
def test_production_refuses_a_blank_or_short_metrics_token(token: str) -> None:
    env = {"WHALLI_ENV": "production", "WHALLI_JWT_SECRET": "p" * 40}
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings({**env, "WHALLI_METRICS_TOKEN": token}, dotenv=None)
    assert load_settings({**env, "WHALLI_METRICS_TOKEN": "x" * 16}, dotenv=None).metrics_token
