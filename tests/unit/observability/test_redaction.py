from __future__ import annotations

import pytest

from whalli.adapters.structlog.redaction import is_secret_key, redact_secrets, redact_text


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "client_secret",
        "token",
        "access_token",
        "metrics-token",
        "accessToken",
        "Authorization",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "cookie",
        "set-cookie",
    ],
)
def test_keys_that_name_a_secret_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["event", "max_tokens", "prompt_tokens", "user_id", "route"])
def test_ordinary_keys_are_left_alone(key: str) -> None:
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://whalli:pw@db:5432/app", "postgresql://***@db:5432/app"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        (
            "failed: connect to amqp://u:p@h and https://a:b@c/x",
            "failed: connect to amqp://***@h and https://***@c/x",
        ),
        ("https://example.com/path?q=1", "https://example.com/path?q=1"),
        (
            "GET https://api.search.example/v1?q=whales&api_key=abc123&key=k9 failed",
            "GET https://api.search.example/v1?q=whales&api_key=***&key=*** failed",
        ),
        (
            "/b/o?X-Amz-Credential=AK%2F2024&X-Amz-Signature=f00d&X-Amz-Expires=60",
            "/b/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
        ),
        ("no url here", "no url here"),
    ],
)
def test_url_credentials_and_secret_query_parameters_inside_text_are_masked(
    text: str, expected: str
) -> None:
    assert redact_text(text) == expected


def test_the_processor_masks_secret_keys_at_any_depth_and_urls_in_any_string() -> None:
    event = {
        "event": "connecting to redis://:pw@cache:6379",
        "password": "hunter2",
        "max_tokens": 512,
        "headers": {"Authorization": "Bearer abc", "accept": "*/*"},
        "attempts": [{"token": "t"}, "postgres://u:p@h/db"],
    }

    assert redact_secrets(None, "info", event) == {
        "event": "connecting to redis://***@cache:6379",
        "password": "***",
        "max_tokens": 512,
        "headers": {"Authorization": "***", "accept": "*/*"},
        "attempts": [{"token": "***"}, "postgres://***@h/db"],
    }
