"""Sign-in with GitHub or Google: send the browser to the provider, take it back, open a session.

The callback answers a browser with a redirect to the web app carrying the tokens in the URL
fragment (never sent to a server, kept out of logs and Referer headers); API clients that ask
for JSON (``Accept: application/json`` or ``?format=json``) get the token pair as JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import CookieParameter, FromPath, FromQuery, QueryParameter
from litestar.response import Redirect

from whalli.config import Settings
from whalli.domain.model.errors import OAuthFailed
from whalli.domain.model.oauth import OAuthProviderName
from whalli.domain.model.principal import Principal
from whalli.domain.services.auth.oauth_callback import (
    CompleteOAuth,
    OAuthCallback,
    ProviderLinked,
)
from whalli.domain.services.auth.oauth_links import OAuthLinks, ProviderNotLinked
from whalli.domain.services.auth.oauth_start import BINDING_COOKIE, STATE_TTL_SECONDS, StartOAuth
from whalli.domain.services.auth.sessions import TokenPair
from whalli.entrypoints.http.controllers.auth import Tokens
from whalli.entrypoints.http.deps import ChosenOAuthProvider
from whalli.entrypoints.http.openapi_operations import documented, redirect
from whalli.entrypoints.http.paths import root_of
from whalli.entrypoints.http.schemas import Schema
from whalli.entrypoints.http.security import SESSION_ONLY

OAUTH_PATH = "/api/auth/oauth"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def callback_uri(settings: Settings, provider: str) -> str:
    """The redirect URI registered with the provider for this deployment."""
    return f"{settings.oauth_redirect_base_url.rstrip('/')}{OAUTH_PATH}/{provider}/callback"


def _binding_cookie(
    value: str, settings: Settings, request: Request[Any, Any, Any], *, max_age: int
) -> Cookie:
    # Lax: sent on the provider's top-level redirect back to us, not on cross-site subrequests.
    # Its path is the callback's as the browser sees it: under the app's root path, if any.
    path = root_of(request.scope) + OAUTH_PATH
    return Cookie(
        key=BINDING_COOKIE, value=value, max_age=max_age, path=path, httponly=True,
        secure=settings.env != "development", samesite="lax",
    )  # fmt: skip


def _fragment_url(web_url: str, tokens: TokenPair) -> str:
    return _with_fragment(
        web_url,
        {
            "accessToken": tokens.access_token,
            "refreshToken": tokens.refresh_token,
            "expiresIn": tokens.expires_in,
            "tokenType": tokens.token_type,
        },
    )


def _with_fragment(web_url: str, values: dict[str, Any]) -> str:
    scheme, netloc, path, query, _ = urlsplit(web_url)
    return urlunsplit((scheme, netloc, path, query, urlencode(values)))


class AuthorizationUrl(Schema):
    authorization_url: str


class Linked(Schema):
    linked: str


# The callback's JSON answer, either shape (Litestar documents a union as oneOf; the annotation of
# ResponseSpec.data_container names a single type, hence Any)
_TOKENS_OR_LINKED: Any = Tokens | Linked


class Link(Schema):
    provider: str
    email: str | None
    created_at: datetime


class Links(Schema):
    items: list[Link]


def _provider_name(provider: str) -> OAuthProviderName:
    try:
        return OAuthProviderName(provider)
    except ValueError:
        raise ProviderNotLinked() from None


def _wants_json(request: Request[Any, Any, Any], format_: str | None) -> bool:
    return format_ == "json" or "application/json" in request.headers.get("accept", "")


class OAuthController(Controller):
    path = OAUTH_PATH
    tags = ["auth"]

    @get(
        "/{provider:str}/authorize",
        opt={"public": True},
        status_code=302,
        summary="Start signing in with a provider (302 to the provider)",
        description="Sets the HttpOnly `whalli_oauth` cookie that the callback must present.",
    )
    async def authorize(
        self,
        request: Request[Any, Any, Any],
        oauth_provider: NamedDependency[ChosenOAuthProvider],
        start_oauth: NamedDependency[StartOAuth],
        settings: NamedDependency[Settings],
    ) -> Redirect:
        provider = oauth_provider.provider
        started = await start_oauth.execute(
            provider, redirect_uri=callback_uri(settings, provider.name)
        )
        cookie = _binding_cookie(
            started.browser_binding, settings, request, max_age=STATE_TTL_SECONDS
        )
        return Redirect(
            started.authorization_url, status_code=302, cookies=[cookie], headers=_NO_STORE
        )

    @post(
        "/{provider:str}/link",
        opt=SESSION_ONLY,
        status_code=200,
        summary="Start linking a provider to the caller's account (its authorization URL)",
        description="The web app sends the browser to `authorizationUrl`; the provider sends it "
        "back to the callback, which links the provider account to the caller's (whatever its "
        "email) and redirects to the web app with `#linked=<provider>` (or answers "
        '`{"linked"}` as JSON). Sets the HttpOnly `whalli_oauth` cookie the callback must '
        "present. An API key cannot link (403).",
    )
    async def link(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        oauth_provider: NamedDependency[ChosenOAuthProvider],
        start_oauth: NamedDependency[StartOAuth],
        settings: NamedDependency[Settings],
    ) -> Response[AuthorizationUrl]:
        provider = oauth_provider.provider
        started = await start_oauth.execute(
            provider, redirect_uri=callback_uri(settings, provider.name), link_to=principal
        )
        cookie = _binding_cookie(
            started.browser_binding, settings, request, max_age=STATE_TTL_SECONDS
        )
        body = AuthorizationUrl(authorization_url=started.authorization_url)
        return Response(body, status_code=200, cookies=[cookie], headers=_NO_STORE)

    @get("/links", summary="The provider accounts linked to the caller's account, oldest first")
    async def links(
        self, principal: NamedDependency[Principal], oauth_links: NamedDependency[OAuthLinks]
    ) -> Links:
        found = await oauth_links.list(principal)
        return Links(
            items=[
                Link(provider=link.provider.value, email=link.email, created_at=link.created_at)
                for link in found
            ]
        )

    @delete(
        "/{provider:str}/link",
        opt=SESSION_ONLY,
        status_code=204,
        summary="Unlink a provider from the caller's account",
        description="404 when none is linked; 409 `last_sign_in_method` when the account has "
        "no password and no other provider; 403 for an API key.",
    )
    async def unlink(
        self,
        provider: FromPath[str],
        principal: NamedDependency[Principal],
        oauth_links: NamedDependency[OAuthLinks],
    ) -> None:
        await oauth_links.unlink(principal, _provider_name(provider))

    @get(
        "/{provider:str}/callback",
        opt={"public": True},
        summary="Finish signing in, or linking (the provider redirects the browser here)",
        description="302 to the web app with the tokens in the fragment, or the token pair as "
        "JSON with `Accept: application/json` or `?format=json`. A link started with "
        "`POST /{provider}/link` answers `#linked=<provider>` in the fragment, or "
        '`{"linked": "<provider>"}` as JSON, and opens no session.',
        responses={200: ResponseSpec(data_container=_TOKENS_OR_LINKED, generate_examples=False)},
        operation_class=documented(
            responses={
                302: redirect(
                    "The usual answer, to a browser: to the web app (`WHALLI_WEB_URL`), the "
                    "token pair (or `linked=<provider>`) in the URL fragment."
                )
            }
        ),
    )
    async def callback(
        self,
        request: Request[Any, Any, Any],
        oauth_provider: NamedDependency[ChosenOAuthProvider],
        complete_oauth: NamedDependency[CompleteOAuth],
        settings: NamedDependency[Settings],
        code: FromQuery[str | None] = None,
        # ``state`` is a reserved Litestar parameter name (the app state).
        oauth_state: Annotated[str | None, QueryParameter(name="state")] = None,
        error: FromQuery[str | None] = None,
        format: FromQuery[str | None] = None,
        binding: Annotated[str | None, CookieParameter(name=BINDING_COOKIE)] = None,
    ) -> Response[Any]:
        if error is not None:
            raise OAuthFailed("The sign-in was cancelled or refused at the provider.")
        tokens = await complete_oauth.execute(
            oauth_provider.provider, OAuthCallback(state=oauth_state, code=code, binding=binding)
        )
        response: Response[Any]
        if isinstance(tokens, ProviderLinked):
            if _wants_json(request, format):
                linked = Linked(linked=tokens.provider.value)
                response = Response(linked, status_code=200, headers=_NO_STORE)
            else:
                url = _with_fragment(settings.web_url, {"linked": tokens.provider.value})
                response = Redirect(url, status_code=302, headers=_NO_STORE)
        elif _wants_json(request, format):
            body = Tokens(
                access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                expires_in=tokens.expires_in, token_type=tokens.token_type,
            )  # fmt: skip
            response = Response(body, status_code=200, headers=_NO_STORE)
        else:
            url = _fragment_url(settings.web_url, tokens)
            response = Redirect(url, status_code=302, headers=_NO_STORE)
        response.set_cookie(_binding_cookie("", settings, request, max_age=0))
        return response
