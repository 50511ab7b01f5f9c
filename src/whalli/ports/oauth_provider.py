"""An OAuth 2.0 / OpenID Connect provider used for sign-in."""

from __future__ import annotations

from typing import Protocol

from whalli.domain.model.oauth import OAuthProfile, OAuthProviderName


class OAuthProvider(Protocol):
    name: OAuthProviderName

    def authorization_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        """Where to send the browser (authorization code flow with PKCE S256)."""
        ...

    async def fetch_profile(
        self, *, code: str, code_verifier: str, redirect_uri: str
    ) -> OAuthProfile:
        """Exchange the code for a token and read who signed in.

        Raises ``OAuthFailed`` (with a reason safe to show) when the provider refuses the code
        or answers something unexpected, ``ServiceUnavailable`` when it cannot be reached.
        """
        ...
