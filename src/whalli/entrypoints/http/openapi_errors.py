"""The error responses of every operation in the OpenAPI document.

Every route answers its errors as RFC 9457 problems (``problems.py``), or under /v1 in OpenAI's
``{"error": {...}}`` shape (``openai_errors.py``); a client generated from the document should
know both. The statuses an operation lists are derived, not written on each handler: from what
Litestar itself reads off the handler (a body, query/header/cookie parameters, path
parameters), the guard's rules (private unless ``opt=PUBLIC``, ``opt=SESSION_ONLY``, rate
limited unless ``opt={"rate_limit": False}``), a 500 everywhere (an unexpected error is
answered in the route's error shape too), and a few small tables for what only the use
case knows (conflicts, uploads, roles). Set on the handlers before the schema is first built,
as ``app._document_security`` does; a response a handler documents itself is kept as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final, Literal
from uuid import UUID

import msgspec
from litestar import Litestar
from litestar.constants import RESERVED_KWARGS
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute
from msgspec import UNSET, Meta, UnsetType

from whalli.entrypoints.http.openai_errors import openai_status
from whalli.entrypoints.http.problems import PROBLEM_JSON
from whalli.entrypoints.http.schemas import Schema
from whalli.entrypoints.http.security import is_public, is_session_only


class FieldError(msgspec.Struct, omit_defaults=True):
    """One thing wrong with what the request sent."""

    message: Annotated[str, Meta(description="What is wrong with it.")]
    key: Annotated[
        str | UnsetType,
        Meta(description="The field (dotted path into the body) or parameter, as sent."),
    ] = UNSET
    source: Annotated[
        Literal["body", "query", "path", "header", "cookie"] | UnsetType,
        Meta(description="Where it was sent."),
    ] = UNSET


class Problem(Schema):
    """An RFC 9457 problem (``application/problem+json``). ``code`` is the stable
    machine-readable identifier to act on; the members after ``requestId`` are extensions sent
    only by the errors they belong to."""

    type: Annotated[str, Meta(description="Always `about:blank`: see `code`.")]
    title: Annotated[str, Meta(description="The HTTP status phrase.")]
    status: Annotated[int, Meta(description="The HTTP status code.")]
    detail: Annotated[str, Meta(description="What went wrong, for a person.")]
    code: Annotated[str, Meta(description="What went wrong, for a program (`chat_not_found`).")]
    instance: Annotated[str, Meta(description="The request's path.")]
    request_id: Annotated[
        str | None, Meta(description="The request's id, as in its `X-Request-ID` header.")
    ]
    errors: Annotated[
        list[FieldError] | UnsetType,
        Meta(description="A request that could not be read (400): each field or parameter."),
    ] = UNSET
    field: Annotated[str | UnsetType, Meta(description="The field or parameter at fault.")] = UNSET
    rule: Annotated[str | UnsetType, Meta(description="The password rule a password broke.")] = (
        UNSET
    )
    min_length: Annotated[int | UnsetType, Meta(description="A password's least length.")] = UNSET
    max_length: Annotated[int | UnsetType, Meta(description="A password's greatest length.")] = (
        UNSET
    )
    limit: Annotated[
        int | UnsetType, Meta(description="The limit crossed (bytes of a body, items, ...).")
    ] = UNSET
    limit_bytes: Annotated[int | UnsetType, Meta(description="The largest file taken.")] = UNSET
    estimated_tokens: Annotated[
        int | UnsetType, Meta(description="The prompt's estimated tokens, over the window.")
    ] = UNSET
    index: Annotated[int | UnsetType, Meta(description="The imported conversation at fault.")] = (
        UNSET
    )
    image_index: Annotated[
        int | UnsetType, Meta(description="The image at fault, from 0 in the request.")
    ] = UNSET
    retry_after: Annotated[
        float | UnsetType | None,
        Meta(description="Seconds to wait before trying again, when known (as `Retry-After`)."),
    ] = UNSET
    model: Annotated[str | UnsetType, Meta(description="The model concerned.")] = UNSET
    need: Annotated[str | UnsetType, Meta(description="The role the action needs.")] = UNSET
    mime: Annotated[str | UnsetType, Meta(description="The file's detected media type.")] = UNSET
    project_ids: Annotated[
        list[UUID] | UnsetType, Meta(description="The projects in the way of the action.")
    ] = UNSET
    attachment_id: Annotated[UUID | UnsetType, Meta(description="The file not ready yet.")] = UNSET
    attachment_status: Annotated[str | UnsetType, Meta(description="That file's status.")] = UNSET
    filename: Annotated[str | UnsetType, Meta(description="That file's name.")] = UNSET
    provider: Annotated[str | UnsetType, Meta(description="The upstream provider that failed.")] = (
        UNSET
    )
    kind: Annotated[str | UnsetType, Meta(description="How the provider failed.")] = UNSET
    upstream_status: Annotated[
        int | UnsetType | None, Meta(description="The provider's HTTP status.")
    ] = UNSET
    reason: Annotated[str | UnsetType, Meta(description="Why a token or sign-in was refused.")] = (
        UNSET
    )
    entry: Annotated[int | UnsetType, Meta(description="The catalog entry at fault.")] = UNSET


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: Annotated[
        str,
        Meta(
            description="`invalid_request_error`, `authentication_error`, `permission_error`, "
            "`rate_limit_error` or `server_error`."
        ),
    ]
    param: Annotated[str | None, Meta(description="The request parameter at fault.")]
    code: Annotated[str | None, Meta(description="A stable identifier (`model_not_found`).")]


class OpenAIError(msgspec.Struct):
    """An error on /v1, in OpenAI's shape (what its SDKs read)."""

    error: OpenAIErrorDetail


# --- what each status means --------------------------------------------------------------------
_MEANING: Final[Mapping[int, str]] = {
    400: "The request could not be read: a body that is not JSON, a misspelt or mistyped field "
    "or parameter (`errors` names each), a malformed upload.",
    401: "No credential, or one that is not valid (`WWW-Authenticate` says which).",
    403: "Authenticated, but not allowed: a role the action needs, a model outside the plan, or "
    "an API key where a signed-in session is required.",
    404: "Nothing with that id, or nothing the caller may see.",
    409: "The request conflicts with the current state (`code` says how).",
    413: "The body or file is larger than this route takes.",
    415: "A type of file this route does not take.",
    422: "The request was read but breaks a rule (`code`, and `field` names the field).",
    429: "Too many requests: wait `Retry-After` seconds.",
    500: "An unexpected error on the server: `code` is `internal_error`, the detail says "
    "nothing more (the server logs it under the request's id); try again later.",
    502: "The upstream model or search provider failed.",
    503: "A backing service (database, Redis, storage, a provider) is unavailable; try again.",
}
# On /v1 a request breaking a rule is a 400 too, as OpenAI answers it (``openai_status``).
_OPENAI_MEANING: Final[Mapping[int, str]] = {
    **_MEANING,
    400: "The request could not be read (not JSON, a mistyped field, a malformed upload) or "
    "breaks a rule (`code`, and `param` names the field): OpenAI's `invalid_request_error`.",
    500: "An unexpected error on the server: OpenAI's `server_error`, `code` "
    "`internal_error`, the message says nothing more; try again later.",
}

# Only the use cases know these: the statuses a route answers beyond what its shape tells.
# Keys are (method, path template as in the document). tests/unit/http/test_s31_openapi_statuses.py
# provokes every operation and reads its use cases' raises, so a status missing here fails it;
# keep no entry for a route that cannot answer it (a client would handle a 409 that never comes).
_CONFLICTS: Final = frozenset(
    {
        ("POST", "/api/auth/register"),  # email taken
        ("DELETE", "/api/auth/me"),  # owns shared projects, last admin
        ("POST", "/api/auth/email/verify"),  # the address is verified already
        ("DELETE", "/api/auth/oauth/{provider}/link"),  # last way to sign in
        # a sign-up racing another for the same address, still lost after its retries (a
        # provider account linked elsewhere is OAuthFailed's 400)
        ("GET", "/api/auth/oauth/{provider}/callback"),
        ("POST", "/api/chat/start"),  # a file still being extracted, a reply in progress
        ("POST", "/api/chat/regenerate"),  # reply in progress, nothing to regenerate
        ("POST", "/api/chats/{chat_id}/fork"),
        ("PUT", "/api/chats/{chat_id}/messages/{message_id}/feedback"),  # reply not finished
        ("POST", "/api/chats/{chat_id}/messages/{message_id}/restore"),
        ("POST", "/api/projects/{project_id}/members"),  # already a member
        ("PATCH", "/api/projects/{project_id}/members/{member_id}"),  # last owner
        ("DELETE", "/api/projects/{project_id}/members/{member_id}"),  # last owner
        ("PATCH", "/api/admin/users/{user_id}"),  # last admin
        ("POST", "/api/searches"),  # active search limit
        ("PATCH", "/api/searches/{search_id}"),  # resuming past that limit
    }
)
# Routes reading no input that break a rule all the same (422): a server sending no email.
_RULES: Final = frozenset({("POST", "/api/auth/email/verify")})
# Routes reading a file from a multipart body themselves (documented by openapi_operations.py).
_UPLOADS: Final = frozenset({("POST", "/api/files/upload"), ("POST", "/v1/audio/transcriptions")})
# Resources whose use cases check a role (project member, admin) or the plan's models.
_ROLE_PREFIXES: Final = (
    "/api/admin/",
    "/api/projects/",
    "/api/chat/",
    "/api/chats",
    "/api/files",
    "/api/searches",
    "/api/usage",
    "/api/presets",
    "/v1/chat/",
    "/v1/audio/",  # a transcription model above the caller's plan
)
# Public routes that check a credential of their own (a password, a refresh token, the
# stream's optional bearer token).
_PUBLIC_401: Final = frozenset(
    {("POST", "/api/auth/login"), ("POST", "/api/auth/refresh"), ("GET", "/api/chat/stream")}
)
# Routes naming a resource in the body or query rather than the path.
_NOT_FOUND: Final = frozenset(
    {
        ("POST", "/api/chat/start"),  # chatId, projectId, attachmentIds, model
        ("POST", "/api/chat/regenerate"),
        ("GET", "/api/chat/stream"),  # sessionId
        ("POST", "/v1/chat/completions"),  # model
        ("POST", "/api/files/upload"),  # projectId
        ("POST", "/api/searches"),  # projectId
        ("POST", "/api/presets"),  # model
        ("GET", "/api/chats"),  # projectId
        ("GET", "/api/files"),  # projectId
        ("GET", "/api/searches"),  # projectId
        ("POST", "/api/chats/import"),  # projectId
        ("POST", "/v1/audio/transcriptions"),  # model
    }
)
# Routes calling a model or search provider while the request waits.
_PROVIDERS: Final = frozenset(
    {("POST", "/v1/chat/completions"), ("POST", "/v1/audio/transcriptions")}
)
# Routes touching no backing service.
_NO_DEPENDENCY: Final = frozenset({("GET", "/api/health")})


def error_statuses(route: HTTPRoute, handler: HTTPRouteHandler, method: str) -> list[int]:
    """The error statuses ``handler`` answers to ``method`` on ``route``, in order."""
    key = (method, route.path_format or "/")
    inputs = _reads_input(route, handler)
    body = "data" in handler.parsed_fn_signature.parameters
    upload = key in _UPLOADS
    private = not is_public(handler)
    rules: dict[int, bool] = {
        # Litestar documents a 400 wherever it validates anything, path parameters included
        400: inputs or upload or bool(route.path_parameters),
        401: private or key in _PUBLIC_401,
        403: private and (is_session_only(handler) or key[1].startswith(_ROLE_PREFIXES)),
        404: bool(route.path_parameters) or key in _NOT_FOUND,
        409: key in _CONFLICTS,
        413: body or upload,
        415: upload,
        422: inputs or upload or key in _RULES,
        429: handler.opt.get("rate_limit") is not False or key in _PROVIDERS,
        500: True,  # any operation may fail unexpectedly (problems.py's generic 500)
        502: key in _PROVIDERS,
        503: key not in _NO_DEPENDENCY,
    }
    return [status for status, applies in rules.items() if applies]


def _reads_input(route: HTTPRoute, handler: HTTPRouteHandler) -> bool:
    """Whether Litestar validates something the client sends (what it documents as a request
    body or a query, header or cookie parameter): the handler's arguments other than its
    dependencies, its path parameters and Litestar's reserved ones (``request``, ``state``)."""
    names = set(handler.parsed_fn_signature.parameters)
    names -= set(RESERVED_KWARGS) - {"data"}
    names -= set(handler.resolve_dependencies())
    names -= set(route.path_parameters)
    return bool(names)


def error_responses(openai: bool, statuses: list[int]) -> dict[int, ResponseSpec]:
    """The ``responses=`` of those statuses: a problem, or OpenAI's error on /v1."""
    schema: type[msgspec.Struct] = OpenAIError if openai else Problem
    media_type = "application/json" if openai else PROBLEM_JSON
    meaning = _OPENAI_MEANING if openai else _MEANING
    return {
        status: ResponseSpec(
            data_container=schema,
            description=meaning[status],
            media_type=media_type,
            generate_examples=False,
        )
        for status in statuses
    }


def document_errors(app: Litestar) -> None:
    """List the error responses of every operation in the document (see the module's doc)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        openai = route.path == "/v1" or route.path.startswith("/v1/")
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            statuses: set[int] = set()
            for method in handler.http_methods:
                statuses.update(error_statuses(route, handler, method))
            if openai:  # what /api answers with a 422 is a 400 there
                statuses = {openai_status(status) for status in statuses}
            documented = dict(handler.responses or {})
            errors = error_responses(openai, sorted(statuses))
            # what the handler documents itself wins (readiness's own 503 body)
            handler.responses = {**errors, **documented}
