"""GitHub sign-in: the OAuth web application flow with PKCE, then ``GET /user`` and
``GET /user/emails`` (scope ``user:email``) for the primary verified address."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import msgspec

from whalli.adapters.oauth._http import DEFAULT_TIMEOUT_S, decode, refused, safe_error_code, send
from whalli.domain.model.errors import OAuthFailed
from whalli.domain.model.oauth import OAuthProfile, OAuthProviderName
from whalli.domain.model.users import clean_external_name
from whalli.ports.oauth_provider import OAuthProvider

GITHUB_AUTHORIZE_URL = "https://github.com/login/oauth/authorize"
GITHUB_TOKEN_URL = "https://github.com/login/oauth/access_token"  # noqa: S105 (a URL)
GITHUB_API_URL = "https://api.github.com"
GITHUB_SCOPE = "read:user user:email"
_PROVIDER = "GitHub"


class _TokenAnswer(msgspec.Struct):
    # GitHub answers token errors with 200 and {"error": ...}; both shapes decode here.
    access_token: str | None = None
    error: str | None = None


class _User(msgspec.Struct):
    id: int
    login: str
    name: str | None = None


class _Email(msgspec.Struct):
    email: str
    primary: bool = False
    verified: bool = False


class GitHubOAuthProvider(OAuthProvider):
    name = OAuthProviderName.GITHUB

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        authorize_url: str = GITHUB_AUTHORIZE_URL,
        token_url: str = GITHUB_TOKEN_URL,
        api_url: str = GITHUB_API_URL,
        scope: str = GITHUB_SCOPE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not client_id or not client_secret:
            raise ValueError("GitHub sign-in needs a client id and a client secret")
        self._client = client
        self._client_id = client_id
        self._client_secret = client_secret
        self._authorize_url = authorize_url
        self._token_url = token_url
        self._api_url = api_url.rstrip("/")
        self._scope = scope
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"GitHubOAuthProvider(client_id={self._client_id!r})"

    def authorization_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        query = urlencode(
            {
                "client_id": self._client_id,
                "redirect_uri": redirect_uri,
                "scope": self._scope,
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self._authorize_url}?{query}"

    async def fetch_profile(
        self, *, code: str, code_verifier: str, redirect_uri: str
    ) -> OAuthProfile:
        token = await self._exchange(code, code_verifier, redirect_uri)
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        user = decode(await self._get("/user", headers), _User, provider=_PROVIDER, what="user")
        emails = decode(
            await self._get("/user/emails", headers),
            list[_Email],
            provider=_PROVIDER,
            what="email list",
        )
        primary = next((e.email for e in emails if e.primary and e.verified), None)
        return OAuthProfile(
            provider=self.name,
            subject=str(user.id),
            email=primary,
            email_verified=primary is not None,
            name=clean_external_name(user.name) or user.login,
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
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
        )
        if response.status_code != 200:
            raise refused(response, provider=_PROVIDER, what="sign-in code")
        answer = decode(response, _TokenAnswer, provider=_PROVIDER, what="token answer")
        if answer.error is not None or not answer.access_token:
            reason = safe_error_code(answer.error)
            raise OAuthFailed(f"GitHub refused the sign-in code ({reason}).", reason=reason)
        return answer.access_token

    async def _get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        response = await send(
            self._client,
            "GET",
            self._api_url + path,
            provider=_PROVIDER,
            timeout_s=self._timeout_s,
            headers=headers,
        )
        if response.status_code != 200:
            raise refused(response, provider=_PROVIDER, what="access token")
        return response
