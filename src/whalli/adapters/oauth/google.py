"""Google sign-in: OpenID Connect authorization code flow with PKCE, then the UserInfo
endpoint (``sub``, ``email``, ``email_verified``, ``name``).

The ID token is not verified here: the profile comes from UserInfo over TLS with the access
token we just obtained from Google's token endpoint, which OpenID Connect allows.
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import msgspec

from whalli.adapters.oauth._http import DEFAULT_TIMEOUT_S, decode, refused, send
from whalli.domain.model.errors import OAuthFailed
from whalli.domain.model.oauth import OAuthProfile, OAuthProviderName
from whalli.ports.oauth_provider import OAuthProvider

GOOGLE_AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
GOOGLE_USERINFO_URL = "https://openidconnect.googleapis.com/v1/userinfo"
GOOGLE_SCOPE = "openid email profile"
_PROVIDER = "Google"


class _TokenAnswer(msgspec.Struct):
    access_token: str


class _UserInfo(msgspec.Struct):
    sub: str
    email: str | None = None
    # A boolean in UserInfo; some Google endpoints have sent the string "true".
    email_verified: bool | str = False
    name: str = ""


class GoogleOAuthProvider(OAuthProvider):
    name = OAuthProviderName.GOOGLE

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        authorize_url: str = GOOGLE_AUTHORIZE_URL,
        token_url: str = GOOGLE_TOKEN_URL,
        userinfo_url: str = GOOGLE_USERINFO_URL,
        scope: str = GOOGLE_SCOPE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError("Google sign-in needs a client id and a client secret")
        self._client = client
        self._client_id = client_id
        self._client_secret = client_secret
        self._authorize_url = authorize_url
        self._token_url = token_url
        self._userinfo_url = userinfo_url
        self._scope = scope
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"GoogleOAuthProvider(client_id={self._client_id!r})"

    def authorization_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self._client_id,
                "redirect_uri": redirect_uri,
                "scope": self._scope,
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
                "prompt": "select_account",
            }
        )
        return f"{self._authorize_url}?{query}"

    async def fetch_profile(
        self, *, code: str, code_verifier: str, redirect_uri: str
    ) -> OAuthProfile:
        token = await self._exchange(code, code_verifier, redirect_uri)
        response = await send(
            self._client,
            "GET",
            self._userinfo_url,
            provider=_PROVIDER,
            timeout_s=self._timeout_s,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        if response.status_code != 200:
            raise refused(response, provider=_PROVIDER, what="access token")
        info = decode(response, _UserInfo, provider=_PROVIDER, what="user info")
        if not info.sub:
            raise OAuthFailed("Google sent an unexpected user info.")
        verified = info.email_verified is True or info.email_verified == "true"
        return OAuthProfile(
            provider=self.name,
            subject=info.sub,
            email=info.email or None,
            email_verified=bool(info.email) and verified,
            name=info.name,
        )

    async def _exchange(self, code: str, code_verifier: str, redirect_uri: str) -> str:
        response = await send(
            self._client,
            "POST",
            self._token_url,
            provider=_PROVIDER,
            timeout_s=self._timeout_s,
            headers={"Accept": "application/json"},
            data={
                "grant_type": "authorization_code",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
        )
        if response.status_code != 200:
            raise refused(response, provider=_PROVIDER, what="sign-in code")
        return decode(response, _TokenAnswer, provider=_PROVIDER, what="token answer").access_token
