"""Search and SMTP settings: off by default, what each provider needs, invalid values named by
their variable (never echoing a secret); and the adapters the container builds from them."""

from __future__ import annotations

import httpx
import pytest

from whalli.adapters.email.smtp import SmtpEmailSender
from whalli.adapters.search.brave import BraveWebSearch
from whalli.adapters.search.searxng import SearxngWebSearch
from whalli.config import ConfigError, load_settings
from whalli.container import build_email_sender, build_web_search

BRAVE_KEY = "BSA-secret-0123456789"


def test_searches_and_email_are_off_by_default() -> None:
    settings = load_settings({}, dotenv=None)
    assert (settings.search_provider, settings.smtp_host) == ("", "")
    assert build_web_search(settings, httpx.AsyncClient()) is None
    assert build_email_sender(settings) is None


def test_searxng_needs_its_base_url_and_brave_its_key() -> None:
    with pytest.raises(ConfigError, match=r"WHALLI_SEARCH_BASE_URL .* is required"):
        load_settings({"WHALLI_SEARCH_PROVIDER": "searxng"}, dotenv=None)
    with pytest.raises(ConfigError, match="WHALLI_SEARCH_API_KEY is required"):
        load_settings({"WHALLI_SEARCH_PROVIDER": "brave"}, dotenv=None)


def test_each_provider_gets_its_adapter() -> None:
    searxng = load_settings(
        {"WHALLI_SEARCH_PROVIDER": "searxng", "WHALLI_SEARCH_BASE_URL": "http://searxng:8080"},
        dotenv=None,
    )
    brave = load_settings(
        {"WHALLI_SEARCH_PROVIDER": "brave", "WHALLI_SEARCH_API_KEY": f" {BRAVE_KEY}\n"},
        dotenv=None,
    )
    assert isinstance(build_web_search(searxng, httpx.AsyncClient()), SearxngWebSearch)
    assert isinstance(build_web_search(brave, httpx.AsyncClient()), BraveWebSearch)
    assert BRAVE_KEY not in repr(brave)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WHALLI_SEARCH_PROVIDER", "google", "WHALLI_SEARCH_PROVIDER"),
        ("WHALLI_SEARCH_BASE_URL", "searxng:8080", "WHALLI_SEARCH_BASE_URL must be an http"),
        ("WHALLI_SEARCH_TIMEOUT_S", "0", "WHALLI_SEARCH_TIMEOUT_S must be more than 0"),
        ("WHALLI_SEARCH_SCHEDULE_INTERVAL_S", "-1", "must not be negative"),
        ("WHALLI_SMTP_TLS", "tls", "WHALLI_SMTP_TLS"),
        ("WHALLI_SMTP_PORT", "70000", "WHALLI_SMTP_PORT must be between 0 and 65535"),
    ],
)
def test_invalid_values_are_named_by_their_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({variable: value}, dotenv=None)


def test_an_smtp_host_needs_a_sender_address_and_its_password_stays_hidden() -> None:
    with pytest.raises(ConfigError, match=r"WHALLI_SMTP_FROM .* is required"):
        load_settings({"WHALLI_SMTP_HOST": "mail.example.com"}, dotenv=None)
    settings = load_settings(
        {"WHALLI_SMTP_HOST": "mail.example.com", "WHALLI_SMTP_FROM": "alerts@example.com",
         "WHALLI_SMTP_PASSWORD": "hunter2-secret", "WHALLI_SMTP_TLS": "ssl"},
        dotenv=None,
    )  # fmt: skip
    assert isinstance(build_email_sender(settings), SmtpEmailSender)
    assert "hunter2-secret" not in repr(settings)


def test_a_sender_must_be_one_mailbox_a_name_with_a_comma_in_quotes() -> None:
    smtp = {"WHALLI_SMTP_HOST": "mail.example.com"}
    for two in ("Whalli, Inc. <alerts@example.com>", "a@example.com, b@example.com"):
        with pytest.raises(ConfigError, match="WHALLI_SMTP_FROM must be one mailbox"):
            load_settings({**smtp, "WHALLI_SMTP_FROM": two}, dotenv=None)
    quoted = '"Whalli, Inc." <alerts@example.com>'
    assert load_settings({**smtp, "WHALLI_SMTP_FROM": quoted}, dotenv=None).smtp_from == quoted
