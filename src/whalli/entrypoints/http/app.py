"""The Litestar application: routes, dependencies, problem+json errors, observability, docs."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from litestar import Litestar, Request, Router
from litestar._openapi.plugin import handle_schema_path_not_found
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components
from litestar.routes import HTTPRoute
from litestar.types import ControllerRouterHandler

from whalli.adapters.prometheus.metrics import http_metrics
from whalli.entrypoints.http import dependency_order
from whalli.entrypoints.http.completion_route import CompletionRoute
from whalli.entrypoints.http.controllers.account_links import AccountLinksController
from whalli.entrypoints.http.controllers.admin import AdminController
from whalli.entrypoints.http.controllers.api_keys import ApiKeyController
from whalli.entrypoints.http.controllers.auth import AuthController
from whalli.entrypoints.http.controllers.chat import ChatStreamController
from whalli.entrypoints.http.controllers.chat_imports import ChatImportController
from whalli.entrypoints.http.controllers.chats import ChatController
from whalli.entrypoints.http.controllers.files import FileController
from whalli.entrypoints.http.controllers.health import HealthController
from whalli.entrypoints.http.controllers.metrics import MetricsController
from whalli.entrypoints.http.controllers.models import ModelController
from whalli.entrypoints.http.controllers.notifications import NotificationController
from whalli.entrypoints.http.controllers.oauth import OAuthController
from whalli.entrypoints.http.controllers.openai_audio import OpenAIAudioController
from whalli.entrypoints.http.controllers.openai_compat import OpenAICompatController
from whalli.entrypoints.http.controllers.presets import PresetController
from whalli.entrypoints.http.controllers.projects import MemberController, ProjectController
from whalli.entrypoints.http.controllers.searches import SearchController
from whalli.entrypoints.http.controllers.shares import ChatShareController, SharedChatController
from whalli.entrypoints.http.controllers.usage import UsageController
from whalli.entrypoints.http.cors import CorsMiddleware
from whalli.entrypoints.http.deps import AppContainer, build_dependencies
from whalli.entrypoints.http.json_body import JsonRequest
from whalli.entrypoints.http.middleware import RequestContextMiddleware
from whalli.entrypoints.http.openai_errors import handle_openai_exception
from whalli.entrypoints.http.openapi_errors import document_errors
from whalli.entrypoints.http.openapi_rooted import RootedJson, RootedScalar
from whalli.entrypoints.http.problems import exception_handlers
from whalli.entrypoints.http.rate_limit import RateLimitPlugin
from whalli.entrypoints.http.security import (
    API_SECURITY,
    CONTAINER_STATE_KEY,
    OPENAI_SECURITY,
    PUBLIC,
    SECURITY_SCHEMES,
    SESSION_SECURITY,
    is_public,
    is_session_only,
    require_principal,
)
from whalli.entrypoints.http.start_route import StartRoute
from whalli.entrypoints.http.stream_route import StreamRoute

ROUTE_HANDLERS: tuple[ControllerRouterHandler, ...] = (
    HealthController,
    MetricsController,
    AuthController,
    AccountLinksController,
    OAuthController,
    ChatStreamController,
    ProjectController,
    MemberController,
    ModelController,
    AdminController,
    UsageController,
    ApiKeyController,
    PresetController,
    OpenAICompatController,
    OpenAIAudioController,
    ChatController,
    ChatImportController,
    ChatShareController,
    SharedChatController,
    FileController,
    SearchController,
    NotificationController,
)


def _docs_path_not_found(request: Request[Any, Any, Any]) -> None:
    """An unknown path under the docs is a 404 problem like any other, not Litestar's page."""
    if getattr(request.route_handler, "fn", None) is handle_schema_path_not_found:
        raise NotFoundException()


def create_app(
    container: AppContainer,
    *,
    extra_route_handlers: Sequence[ControllerRouterHandler] = (),
) -> Litestar:
    """Build the app; nothing connects until startup, which calls ``container.init_resources``.

    Logging is configured by the caller (CLI or tests) with ``configure_logging``.
    """
    dependency_order.install()  # no task group per request for its dependencies
    app = Litestar(
        route_handlers=[*ROUTE_HANDLERS, *extra_route_handlers],
        dependencies=build_dependencies(container),
        # Every route is private unless it (or its controller) has ``opt=PUBLIC``.
        guards=[require_principal],
        request_class=JsonRequest,
        plugins=[RateLimitPlugin(container)],
        state=State({CONTAINER_STATE_KEY: container}),
        # OpenAI's error shape anywhere under /v1, unknown routes and methods included
        exception_handlers=exception_handlers(
            openai_prefix="/v1", openai_handler=handle_openai_exception
        ),
        on_startup=[container.init_resources],
        on_shutdown=[container.shutdown_resources],
        openapi_config=OpenAPIConfig(
            title="Whalli API",
            version=_version(),
            # The UI at /api/docs, the schema at /api/docs/openapi.json; public. A new router per
            # app: Litestar registers the docs routes on it.
            openapi_router=Router(
                "/api/docs",
                route_handlers=[],
                include_in_schema=False,
                opt=PUBLIC,
                before_request=_docs_path_not_found,
            ),
            render_plugins=[RootedScalar(), RootedJson()],  # (under the root path)
            components=Components(security_schemes=dict(SECURITY_SCHEMES)),
        ),
        # Our structlog setup owns logging; Litestar's default config would replace it, and
        # Litestar must not print exception details itself (problems.py logs them, redacted).
        logging_config=None,
        debug=False,
    )
    _document_security(app)
    document_errors(app)  # every operation's error responses (problems, OpenAI's on /v1)
    # Outside routing and the exception handler, so 404/405 and errors are observed as well.
    # The stream route, below Litestar (stream_route.py), inside the request context (its
    # request id, access line and metrics)
    # CORS around both (cors.py): the reply stream is read cross-origin too
    # and the streamed /v1 completion and the chat start, below Litestar too
    # (completion_route.py, start_route.py)
    below = StartRoute(app.asgi_handler, container)
    app.asgi_handler = RequestContextMiddleware(
        CorsMiddleware(
            StreamRoute(CompletionRoute(below, container), container),
            container.settings.cors_allowed_origins,
        ),
        http_metrics(),
        _RouteTemplates(app),
    )
    return app


def _document_security(app: Litestar) -> None:
    """Give every private operation its security requirement in the OpenAPI document, derived
    from the guard's own rule (private unless ``opt=PUBLIC``) so the two cannot disagree; an
    ``opt=SESSION_ONLY`` operation (its use case refuses API keys) lists the access token alone.

    Per operation rather than document-wide: Litestar cannot write the empty requirement a
    public operation would need to opt out of a global one. Set before the schema is first
    built (lazily, on the first request for it).
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        openai = route.path == "/v1" or route.path.startswith("/v1/")
        for handler in route.route_handlers:
            if is_public(handler):
                continue
            if is_session_only(handler):
                handler.security = list(SESSION_SECURITY)
            else:
                handler.security = list(OPENAI_SECURITY if openai else API_SECURITY)


def _version() -> str:
    try:
        return version("whalli")
    except PackageNotFoundError:
        return "0.0.0"


class _RouteTemplates:
    """Litestar's matched template drops parameter types (``/chats/{chat_id}``); metrics use the
    declared path (``/chats/{chat_id:uuid}``). Rebuilt when routes are registered later."""

    def __init__(self, app: Litestar) -> None:
        self._app = app
        self._declared: dict[str, str] = {}

    def __call__(self, template: str) -> str:
        declared = self._declared.get(template)
        if declared is None:
            self._declared = {route.path_format: route.path for route in self._app.routes}
            declared = self._declared.setdefault(template, template)
        return declared
