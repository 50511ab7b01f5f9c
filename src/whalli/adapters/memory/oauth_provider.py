"""An in-process OAuth provider: the browser's consent is a method call, PKCE is checked."""

from __future__ import annotations

from urllib.parse import urlencode

from whalli.domain.model.errors import OAuthFailed, ServiceUnavailable
from whalli.domain.model.oauth import OAuthProfile, OAuthProviderName
from whalli.domain.services.auth.oauth_start import pkce_challenge
from whalli.ports.oauth_provider import OAuthProvider


class FakeOAuthProvider(OAuthProvider):
    """``authorization_url`` records the attempt; ``approve(state, profile)`` plays the user
    consenting and returns the code the provider would send back. ``down`` makes every
    exchange fail as an unreachable provider would. Codes are single use."""

    def __init__(
        self, name: OAuthProviderName, *, authorize_url: str = "https://provider.test/authorize"
    ) -> None:
        self.name = name
        self.down = False
        self._authorize_url = authorize_url
        self._attempts: dict[str, tuple[str, str]] = {}  # state -> (challenge, redirect_uri)
        self._codes: dict[str, tuple[str, str, OAuthProfile]] = {}

    def authorization_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        self._attempts[state] = (code_challenge, redirect_uri)
        query = urlencode(
            {
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
                "redirect_uri": redirect_uri,
            }
        )
        return f"{self._authorize_url}?{query}"

    def approve(self, state: str, profile: OAuthProfile) -> str:
        challenge, redirect_uri = self._attempts.pop(state)
        code = f"code-{len(self._codes) + 1}"
        self._codes[code] = (challenge, redirect_uri, profile)
        return code

    async def fetch_profile(
        self, *, code: str, code_verifier: str, redirect_uri: str
    ) -> OAuthProfile:
        if self.down:
            raise ServiceUnavailable(f"{self.name} is unreachable")
        entry = self._codes.pop(code, None)
        if entry is None:
            raise OAuthFailed("The provider refused the sign-in code (bad_verification_code).")
        challenge, expected_uri, profile = entry
        if pkce_challenge(code_verifier) != challenge or redirect_uri != expected_uri:
            raise OAuthFailed("The provider refused the sign-in code (bad_verification_code).")
        return profile
