"""Request authentication: every route is private unless it opts out with ``opt=PUBLIC``.

``require_principal`` is an app-level guard. On a private route it reads the one credential the
request carries, ``Authorization: Bearer <access token or API key>`` or ``X-API-Key: <API key>``,
runs the ``Authenticate`` use case (the same checks for every kind of credential) and keeps the
resulting :class:`Principal` in the connection state, where ``provide_principal`` (the
``principal`` dependency) finds it. Public routes cost nothing: the guard returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from litestar.connection import ASGIConnection
from litestar.datastructures import Headers
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import SecurityRequirement, SecurityScheme
from litestar.types import Scope

from whalli.domain.model.errors import InvalidToken, Unauthenticated, WhalliError
from whalli.domain.model.principal import Principal
from whalli.domain.services.auth.authenticate import Authenticate, AuthenticateHandler
from whalli.entrypoints.http.rate_limit import (
    apply_decision,
    count_request,
    enforce_rate_limit,
    is_rate_limited,
    refund_request,
    start_rate_limit,
)
from whalli.ports.rate_limiter import RateDecision

if TYPE_CHECKING:
    from whalli.entrypoints.http.deps import AppContainer

# ``opt=PUBLIC`` on a route, controller or router; read-only, since every layer shares it.
PUBLIC: Final[Mapping[str, Any]] = MappingProxyType({"public": True})
# ``opt=SESSION_ONLY``: a private route whose use case refuses API keys (403), so the OpenAPI
# document lists the access token alone there; the guard itself still accepts either.
SESSION_ONLY: Final[Mapping[str, Any]] = MappingProxyType({"session_only": True})
CONTAINER_STATE_KEY: Final = "container"  # app.state: the AppContainer (set by create_app)
PRINCIPAL_STATE_KEY: Final = "whalli_principal"  # connection state: the Principal
API_KEY_HEADER: Final = "x-api-key"
_BEARER: Final = "bearer"

# How the docs and generated clients learn to authenticate (OpenAPI ``securitySchemes``). Both
# credentials are accepted on every private route (but an ``opt=SESSION_ONLY`` one documents the
# access token alone); the first scheme listed is the one meant there.
JWT_SCHEME: Final = "accessToken"
API_KEY_SCHEME: Final = "apiKey"
SECURITY_SCHEMES: Final[Mapping[str, SecurityScheme]] = MappingProxyType(
    {
        JWT_SCHEME: SecurityScheme(
            type="http", scheme="bearer", bearer_format="JWT",
            description="An access token from /api/auth/login, /register or /refresh.",
        ),
        API_KEY_SCHEME: SecurityScheme(
            type="http", scheme="bearer", bearer_format="API key",
            description="A personal API key (whk_...) from /api/keys, as OpenAI clients send it: "
            "Authorization: Bearer <key>. The X-API-Key header is accepted too.",
        ),
    }
)  # fmt: skip
API_SECURITY: Final[tuple[SecurityRequirement, ...]] = (
    {JWT_SCHEME: []},
    {API_KEY_SCHEME: []},
)
OPENAI_SECURITY: Final[tuple[SecurityRequirement, ...]] = (
    {API_KEY_SCHEME: []},
    {JWT_SCHEME: []},
)
SESSION_SECURITY: Final[tuple[SecurityRequirement, ...]] = ({JWT_SCHEME: []},)


def is_public(handler: BaseRouteHandler) -> bool:
    return bool(handler.opt.get("public", False))


def is_session_only(handler: BaseRouteHandler) -> bool:
    return bool(handler.opt.get("session_only", False))


def credential_from(headers: Headers) -> str | None:
    """The credential the request presents, or ``None`` if it presents none.

    More than one (two ``Authorization`` headers, or a bearer token and an ``X-API-Key``) is
    refused rather than picking one: which would be checked should never be a guess. An
    ``Authorization`` header of another scheme (``Basic``) is not a credential we accept.
    """
    return credential_in(headers.getall("authorization", []), headers.getall(API_KEY_HEADER, []))


def credential_in(authorizations: Sequence[str], api_keys: Sequence[str]) -> str | None:
    """``credential_from`` over the values of the two headers, as sent."""
    if len(authorizations) + len(api_keys) > 1:
        raise InvalidToken("Send exactly one credential.")
    if authorizations:
        scheme, _, value = authorizations[0].strip().partition(" ")
        if scheme.lower() != _BEARER:
            raise Unauthenticated("Use the Bearer authorization scheme.")
        return value.strip() or None
    if api_keys:
        return api_keys[0].strip() or None
    return None


async def require_principal(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """App-level guard: authenticate every request to a route not marked public, and count it
    against its budget (the user's when authenticated, else the client IP's).

    A request whose credential is missing or refused is counted against its IP before the 401,
    so guessing tokens or API keys is as slow as any anonymous traffic.
    """
    if is_public(handler):
        await enforce_rate_limit(connection, None)
        return
    try:
        credential = credential_from(connection.headers)
        if credential is None:
            raise Unauthenticated()
        container: AppContainer = connection.app.state[CONTAINER_STATE_KEY]
        authenticate = await container.authenticate()
        limited = is_rate_limited(connection)
        await authenticate_and_count(connection, authenticate, credential, limited=limited)
    except Unauthenticated:
        await enforce_rate_limit(connection, None)  # the client's address pays for a refusal
        raise


async def authenticate_and_count(
    connection: ASGIConnection[Any, Any, Any, Any],
    authenticate: AuthenticateHandler,
    credential: str,
    *,
    limited: bool,
) -> Principal:
    """Who ``credential`` is, kept in the connection state (``provide_principal``), with the
    request counted against their budget when ``limited`` (its decision kept for the response
    headers; ``RateLimited`` when refused). Used by the guard and by the ``/v1`` completion
    route below Litestar (completion_route.py).

    A credential that names its user has the request counted against that user while the
    database confirms the rest: the count is sent first and its answer read after the
    authentication (one round trip for both). Raises ``Unauthenticated`` when the credential is
    refused, with that count given back: a token of an ended session, a revoked key or a
    replayed one cannot spend its user's budget. The caller charges the client's address.
    """
    claimed = authenticate.claimed_user(credential)
    charged: asyncio.Future[RateDecision] | None = None
    if claimed is not None and limited:
        charged = start_rate_limit(connection, claimed)
    try:
        principal = await authenticate.execute(Authenticate(credential=credential))
    except Unauthenticated:
        if charged is not None and claimed is not None:
            with contextlib.suppress(WhalliError):
                await charged
            await refund_request(connection, claimed)  # not that user's request after all
        raise
    except BaseException:
        if charged is not None:
            charged.cancel()
        raise
    connection.scope.setdefault("state", {})[PRINCIPAL_STATE_KEY] = principal
    if charged is not None and claimed == principal.user_id:
        apply_decision(connection, await charged)
    else:
        if charged is not None:
            charged.cancel()  # another user's budget: counted, its answer not needed
        if limited:
            await count_request(connection, principal.user_id)
    return principal


def provide_principal(scope: Scope) -> Principal:
    """The ``principal`` dependency: who the guard authenticated for this request.

    On a public route there is none, so asking for it there is an ``Unauthenticated`` (401).
    """
    principal = scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
    if not isinstance(principal, Principal):
        raise Unauthenticated()
    return principal
