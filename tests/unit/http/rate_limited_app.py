"""A Litestar app with rate limits but a stand-in for the auth guard, for the rate limit tests.

The stand-in calls ``enforce_rate_limit`` as the real guard does, taking the user id from an
``X-Test-User`` header instead of a credential.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Litestar, get
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig

from whalli.adapters.prometheus.metrics import http_metrics
from whalli.domain.model.errors import ChatNotFound
from whalli.entrypoints.http.app import ROUTE_HANDLERS
from whalli.entrypoints.http.deps import AppContainer, build_dependencies
from whalli.entrypoints.http.middleware import RequestContextMiddleware
from whalli.entrypoints.http.problems import exception_handlers
from whalli.entrypoints.http.rate_limit import RateLimitPlugin, enforce_rate_limit

TEST_USER_HEADER = "x-test-user"


async def stand_in_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    user = connection.headers.get(TEST_USER_HEADER)
    await enforce_rate_limit(connection, UUID(user) if user else None)


class LimitedController(Controller):
    path = "/api/limited"

    @get("/ok")
    async def ok(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/missing")
    async def missing(self) -> None:
        raise ChatNotFound(chat_id="c-1")

    @get("/open", opt={"rate_limit": False})
    async def open(self) -> dict[str, str]:
        return {"status": "ok"}


def rate_limited_app(container: AppContainer) -> Litestar:
    app = Litestar(
        route_handlers=[*ROUTE_HANDLERS, LimitedController],
        dependencies=build_dependencies(container),
        guards=[stand_in_guard],
        plugins=[RateLimitPlugin(container)],
        exception_handlers=exception_handlers(),
        openapi_config=OpenAPIConfig(title="test", version="0", path="/api/docs"),
        logging_config=None,
    )
    # as in create_app: the middleware puts the decision's headers on the response
    app.asgi_handler = RequestContextMiddleware(app.asgi_handler, http_metrics(), str)
    return app
