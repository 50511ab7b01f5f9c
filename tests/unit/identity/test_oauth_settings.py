from __future__ import annotations

import pytest

from whalli.config import ConfigError, Secret, load_settings


def test_oauth_providers_default_to_disabled_and_to_the_real_endpoints() -> None:
    settings = load_settings({}, dotenv=None)

    assert settings.github_client_id == settings.google_client_id == ""
    assert settings.github_token_url == "https://github.com/login/oauth/access_token"
    assert settings.google_userinfo_url == "https://openidconnect.googleapis.com/v1/userinfo"


def test_a_client_id_without_its_secret_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="WHALLI_GITHUB_CLIENT_SECRET is required"):
        load_settings({"WHALLI_GITHUB_CLIENT_ID": "abc"}, dotenv=None)


def test_client_secrets_are_wrapped_so_they_never_print() -> None:
    settings = load_settings(
        {"WHALLI_GOOGLE_CLIENT_ID": "id", "WHALLI_GOOGLE_CLIENT_SECRET": "shh-its-secret"},
        dotenv=None,
    )

    assert settings.google_client_secret == Secret("shh-its-secret")
    assert "shh-its-secret" not in repr(settings)


def test_oauth_urls_must_be_http_urls() -> None:
    with pytest.raises(ConfigError, match="WHALLI_WEB_URL must be an http"):
        load_settings({"WHALLI_WEB_URL": "javascript:alert(1)"}, dotenv=None)
