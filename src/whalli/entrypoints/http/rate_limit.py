"""Request rate limits in the HTTP app: the check the auth guard calls, and the RateLimit headers.

Wiring (``create_app``): ``plugins=[RateLimitPlugin(container)]``. The app-level guard that
authenticates then calls ``await enforce_rate_limit(connection, user_id_or_none)`` on every
route, so authenticated requests count against their user and the others (including failed
authentications) against their client IP. A route opts out with ``opt={"rate_limit": False}``;
the docs are exempt. The decision is kept in the scope's state, and the request-context
middleware puts ``RateLimit-Limit``/``-Remaining``/``-Reset`` (``decision_headers``) on whatever
response goes out, error documents from the exception handlers included (a 429 carries
``Retry-After`` from problems.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from uuid import UUID

from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.plugins import InitPlugin
from litestar.types import Scope

from whalli.container import rate_limit_policy
from whalli.domain.model.errors import RateLimited
from whalli.entrypoints.http.client_ip import IPNetwork, client_ip, parse_trusted_proxies
from whalli.entrypoints.http.paths import routed_path
from whalli.ports.rate_limiter import RateDecision

if TYPE_CHECKING:
    from whalli.domain.services.rate_limits import RequestLimits
    from whalli.entrypoints.http.deps import AppContainer

__all__ = [
    "RateLimitPlugin",
    "apply_decision",
    "enforce_rate_limit",
    "rate_limit_policy",
    "request_client_ip",
    "start_rate_limit",
]

OPT_KEY = "rate_limit"
DECISION_STATE_KEY = "rate_limit"
CLIENT_IP_STATE_KEY = "client_ip"


class RateLimitPlugin(InitPlugin):
    """Registers the header hook and gives ``enforce_rate_limit`` the container."""

    def __init__(self, container: AppContainer) -> None:
        self.container = container
        self._trusted: tuple[IPNetwork, ...] | None = None
        self._exempt_prefix: str | None = None
        self._limits: RequestLimits | None = None  # the container's, once resolved

    @property
    def resolved_limits(self) -> RequestLimits | None:
        """The limits, once ``limits`` has resolved them (the first counted request)."""
        return self._limits

    async def limits(self) -> RequestLimits:
        limits = self._limits
        if limits is None:
            limits = self._limits = await self.container.request_limits()
        return limits

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        openapi = app_config.openapi_config
        if openapi is not None:
            # Litestar serves the docs on ``openapi_router`` if given, else at ``path``.
            router = openapi.openapi_router
            docs = router.path if router is not None else (openapi.path or "/schema")
            self._exempt_prefix = docs.rstrip("/") or None
        return app_config

    @property
    def trusted_proxies(self) -> tuple[IPNetwork, ...]:
        if self._trusted is None:  # settings are read once, on first use, not at import
            self._trusted = parse_trusted_proxies(self.container.settings.trusted_proxies)
        return self._trusted

    def is_limited(self, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
        if connection.route_handler.opt.get(OPT_KEY) is False:
            return False
        path = routed_path(connection.scope)
        prefix = self._exempt_prefix
        return not (prefix and (path == prefix or path.startswith(prefix + "/")))


def is_rate_limited(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether ``enforce_rate_limit`` counts requests to this route."""
    return _plugin(connection).is_limited(connection)


def _plugin(connection: ASGIConnection[Any, Any, Any, Any]) -> RateLimitPlugin:
    return connection.app.plugins.get(RateLimitPlugin)


def request_client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client's IP (trusted-proxy aware), resolved once per request; for ``check_login``."""
    state = connection.scope.setdefault("state", {})
    ip = state.get(CLIENT_IP_STATE_KEY)
    if not isinstance(ip, str):
        ip = client_ip(connection.scope, _plugin(connection).trusted_proxies)
        state[CLIENT_IP_STATE_KEY] = ip
    return ip


async def enforce_rate_limit(
    connection: ASGIConnection[Any, Any, Any, Any], principal_user_id: UUID | None
) -> None:
    """Count this request (by user when authenticated, else by client IP) unless its route opts
    out; keep the decision for the response headers; raise ``RateLimited`` when refused.

    Raises ``ServiceUnavailable`` (503) when the store is down and the limits fail closed.
    """
    plugin = _plugin(connection)
    if not plugin.is_limited(connection):
        return
    await count_request(connection, principal_user_id)


async def count_request(
    connection: ASGIConnection[Any, Any, Any, Any], principal_user_id: UUID | None
) -> None:
    """Count this request (by user when authenticated, else by client IP) whatever its route
    says; keep the decision for the response headers; raise ``RateLimited`` when refused."""
    limits = await _plugin(connection).limits()
    hit = limits.check_request(principal_user_id, request_client_ip(connection))
    apply_decision(connection, await hit)


async def refund_request(
    connection: ASGIConnection[Any, Any, Any, Any], principal_user_id: UUID
) -> None:
    """Take back a request counted against ``principal_user_id``'s budget before their
    credential was refused (``RequestLimits.refund_request``)."""
    await (await _plugin(connection).limits()).refund_request(principal_user_id)


async def charge_refused_credential(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Count a request whose credential was refused against its client IP's budget, on a route
    that otherwise counts nothing (the metrics scrape: its scraper is never limited, while
    guessing its token is as slow as any anonymous traffic). Raises ``RateLimited`` when the
    budget is spent."""
    await count_request(connection, None)


def start_rate_limit(
    connection: ASGIConnection[Any, Any, Any, Any], principal_user_id: UUID
) -> asyncio.Future[RateDecision]:
    """Start counting this request (for a route that counts) and give the future of its
    decision, for ``apply_decision``: the guard awaits it after the authentication, whose
    round trip the count's overlaps. Through the app's Redis limiter the count is written
    before this returns and no task is made (a task would start a loop turn late, and be
    waited for one more); with another limiter, or before the app has resolved its limits,
    it runs in a task. Cancel the future to drop it (the request may have been counted)."""
    limits = _plugin(connection).resolved_limits
    if limits is None:
        return asyncio.ensure_future(_first_check(connection, principal_user_id))
    hit = limits.check_request(principal_user_id, request_client_ip(connection))
    return hit if isinstance(hit, asyncio.Future) else asyncio.ensure_future(hit)


async def _first_check(
    connection: ASGIConnection[Any, Any, Any, Any], principal_user_id: UUID
) -> RateDecision:
    limits = await _plugin(connection).limits()
    return await limits.check_request(principal_user_id, request_client_ip(connection))


def apply_decision(connection: ASGIConnection[Any, Any, Any, Any], decision: RateDecision) -> None:
    """Keep the decision for the response headers; raise ``RateLimited`` when refused."""
    connection.scope.setdefault("state", {})[DECISION_STATE_KEY] = decision
    if not decision.allowed:
        raise RateLimited(retry_after=decision.reset_seconds)


def rate_limit_headers(decision: RateDecision) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(decision.reset_seconds).encode()),
    ]


def decision_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The headers of the request's decision, when one was counted (an unmetered decision,
    from disabled limits or a store failing open, tells nothing). The request-context
    middleware adds them to the response start (a Litestar ``before_send`` hook would wrap
    every message sent, each chunk of a stream included)."""
    state = scope.get("state")
    decision = state.get(DECISION_STATE_KEY) if isinstance(state, dict) else None
    if isinstance(decision, RateDecision) and decision.metered:
        return rate_limit_headers(decision)
    return []
