"""The OAuthProvider contract, for the in-process fake and for the GitHub and Google adapters
against the loopback provider (tests/support/oauth_server.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.oauth_server import CLIENT_ID, CLIENT_SECRET, FakeOAuthServer
from whalli.adapters.memory.oauth_provider import FakeOAuthProvider
from whalli.adapters.oauth.github import GitHubOAuthProvider
from whalli.adapters.oauth.google import GoogleOAuthProvider
from whalli.domain.model.errors import OAuthFailed, ServiceUnavailable
from whalli.domain.model.oauth import OAuthProfile, OAuthProviderName
from whalli.domain.services.auth.oauth_start import pkce_challenge
from whalli.ports.oauth_provider import OAuthProvider

VERIFIER = "v" * 43
REDIRECT_URI = "http://127.0.0.1:3001/api/auth/oauth/x/callback"


@dataclass
class Harness:
    provider: OAuthProvider
    consent: Callable[[str], Awaitable[str]]  # authorization URL -> the code sent back
    break_provider: Callable[[], None]


@pytest.fixture(params=["fake", "github", "google"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "fake":
        fake = FakeOAuthProvider(OAuthProviderName.GITHUB)
        profile = OAuthProfile(
            provider=fake.name, subject="1", email="octocat@example.com", email_verified=True
        )

        async def approve(url: str) -> str:
            return fake.approve(parse_qs(urlsplit(url).query)["state"][0], profile)

        def down() -> None:
            fake.down = True

        yield Harness(fake, approve, down)
        return
    server = FakeOAuthServer().start()
    async with httpx.AsyncClient() as http:
        provider: OAuthProvider
        if request.param == "github":
            provider = GitHubOAuthProvider(
                http, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_url=server.url,
                authorize_url=f"{server.url}/login/oauth/authorize",
                token_url=f"{server.url}/login/oauth/access_token",
            )  # fmt: skip
        else:
            provider = GoogleOAuthProvider(
                http, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                authorize_url=f"{server.url}/o/oauth2/v2/auth", token_url=f"{server.url}/token",
                userinfo_url=f"{server.url}/userinfo",
            )  # fmt: skip

        async def browser(url: str) -> str:
            answer = await http.get(url)
            return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]

        def failing() -> None:
            server.failing = True

        yield Harness(provider, browser, failing)
    server.stop()


def authorize(harness: Harness, state: str = "s" * 43) -> str:
    return harness.provider.authorization_url(
        state=state, code_challenge=pkce_challenge(VERIFIER), redirect_uri=REDIRECT_URI
    )


async def test_the_authorization_url_carries_state_the_s256_challenge_and_redirect_uri(
    harness: Harness,
) -> None:
    query = parse_qs(urlsplit(authorize(harness, state="abc")).query)

    assert query["state"] == ["abc"]
    assert query["code_challenge"] == [pkce_challenge(VERIFIER)]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [REDIRECT_URI]


async def test_a_code_with_its_verifier_yields_the_profile_with_a_verified_email(
    harness: Harness,
) -> None:
    code = await harness.consent(authorize(harness))

    profile = await harness.provider.fetch_profile(
        code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT_URI
    )

    assert profile.provider is harness.provider.name
    assert profile.subject
    assert profile.email_verified is True
    assert profile.email is not None


async def test_a_wrong_verifier_is_refused(harness: Harness) -> None:
    code = await harness.consent(authorize(harness))

    with pytest.raises(OAuthFailed, match="refused the sign-in code"):
        await harness.provider.fetch_profile(
            code=code, code_verifier="w" * 43, redirect_uri=REDIRECT_URI
        )


async def test_a_code_works_only_once(harness: Harness) -> None:
    code = await harness.consent(authorize(harness))
    await harness.provider.fetch_profile(
        code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT_URI
    )

    with pytest.raises(OAuthFailed, match="refused the sign-in code"):
        await harness.provider.fetch_profile(
            code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT_URI
        )


async def test_a_failing_provider_is_unavailable(harness: Harness) -> None:
    code = await harness.consent(authorize(harness))
    harness.break_provider()

    with pytest.raises(ServiceUnavailable, match=r"unreachable|HTTP 500"):
        await harness.provider.fetch_profile(
            code=code, code_verifier=VERIFIER, redirect_uri=REDIRECT_URI
        )
