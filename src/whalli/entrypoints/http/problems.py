"""RFC 9457 problem+json: the one place where errors become HTTP responses.

Body: ``type``, ``title``, ``status``, ``detail``, ``code``, ``instance``, ``requestId`` and the
error's details (camelCased; a detail named like one of those members is a programming error,
``ValueError``, never silently dropped: name it after what it is, ``attachment_status``).
``type`` is ``about:blank``, so ``title`` is the status phrase and ``code`` is the stable
machine-readable identifier. Unexpected exceptions become a generic 500:
the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from whalli.domain.model.errors import (
    AttachmentTooLarge,
    Conflict,
    ImportTooLarge,
    InvalidCatalog,
    InvalidInput,
    InvalidToken,
    NotFound,
    OAuthFailed,
    PermissionDenied,
    ProviderError,
    ProviderRateLimited,
    ProviderRejectedRequest,
    RateLimited,
    ServiceUnavailable,
    Unauthenticated,
    UnsupportedFileType,
    WhalliError,
)
from whalli.entrypoints.http.middleware import request_id_of
from whalli.entrypoints.http.paths import client_path, routed_path
from whalli.entrypoints.http.schemas import camel_name

PROBLEM_JSON = "application/problem+json"
GENERIC_DETAIL = "An unexpected error occurred."

# The only mapping from domain errors to statuses; a subclass takes its nearest ancestor's status.
STATUS_BY_ERROR: dict[type[WhalliError], int] = {
    InvalidInput: 422,
    InvalidCatalog: 500,  # a bad catalog file is the operator's fault, not the client's
    OAuthFailed: 400,  # a bad or replayed sign-in callback, not a form to correct
    NotFound: 404,
    Conflict: 409,
    Unauthenticated: 401,
    PermissionDenied: 403,
    RateLimited: 429,
    AttachmentTooLarge: 413,
    ImportTooLarge: 413,
    UnsupportedFileType: 415,
    ServiceUnavailable: 503,
    ProviderError: 502,  # the upstream model provider failed: a bad gateway, not our bug
    # ...but refused this request as invalid: the caller's fault (as LiteLLM and OpenRouter
    # answer it), so that no SDK retries it as a server error
    ProviderRejectedRequest: 400,
    # ...or kept rate limiting it: as Whalli's own limit is answered (a client backs off)
    ProviderRateLimited: 429,
}

log = structlog.get_logger("whalli.http")


def retry_after_header(error: WhalliError) -> str | None:
    """The ``Retry-After`` to answer ``error`` with, if any: Whalli's own rate limit, or the
    provider's (whole seconds, rounded up) when it said."""
    if isinstance(error, RateLimited) and "retry_after" in error.details:
        return str(error.details["retry_after"])
    seconds = error.details.get("retry_after")
    if isinstance(error, ProviderRateLimited) and isinstance(seconds, int | float):
        return str(max(0, math.ceil(seconds)))
    return None


def status_for(error: WhalliError) -> int:
    for cls in type(error).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    code: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": client_path(request.scope),
        "requestId": request_id_of(request.scope),
    }
    for key, value in (extra or {}).items():
        name = camel_name(key)
        if name in body:  # a detail named like a member would be lost, or would lie
            raise ValueError(f"The problem detail {key!r} clashes with the member {name!r}.")
        body[name] = value
    return Response(
        content=msgspec.json.encode(body, enc_hook=str),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _domain_error(request: Request[Any, Any, Any], exc: WhalliError) -> Response[bytes]:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if status == 401:
        # RFC 6750 3.1: a presented token that failed says so; a missing one gets a bare challenge.
        invalid = isinstance(exc, InvalidToken)
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if invalid else "Bearer"
    if (retry := retry_after_header(exc)) is not None:
        headers["Retry-After"] = retry
    if status == 503:
        log.warning("service unavailable", code=exc.code, detail=exc.message)
    elif status >= 500:
        log.error("request failed", code=exc.code, exc_info=exc)
    return problem_response(
        request,
        status=status,
        code=exc.code,
        detail=exc.message,
        extra=exc.details,
        headers=headers,
    )


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status >= 500:
        log.error("request failed", exc_info=exc)
        return problem_response(
            request, status=status, code="internal_error", detail=GENERIC_DETAIL
        )
    detail = exc.detail
    # Litestar's validation errors name the field and the rule (at most echoing the client's input).
    extra: dict[str, Any] | None = (
        {"errors": [_as_sent(request, e) for e in exc.extra]}
        if isinstance(exc.extra, list) and exc.extra
        else None
    )
    if isinstance(exc, ValidationException):
        code = "validation_failed"
        detail = as_called(request, detail)
        if body_missing(exc):
            detail = MISSING_BODY
            extra = {"errors": [{"message": MISSING_BODY, "source": "body"}]}
    else:
        code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE and (limit := body_limit(request)):
        detail = f"The request body is larger than this route accepts (at most {limit} bytes)."
        extra = {**(extra or {}), "limit": limit}
    return problem_response(
        request,
        status=status,
        code=code,
        detail=detail,
        extra=extra,
        headers=exc.headers,
    )


_VALIDATION_FAILED = "Validation failed for "


def as_called(request: Request[Any, Any, Any], detail: str) -> str:
    """Litestar's ``Validation failed for POST /api/...`` names the request by its URL, which
    joins a root path given with a trailing slash (``/whalli/``) and the path with two slashes
    (``/whalli//api/...``): name it as its client called it, as the problem's ``instance``
    (``/v1``'s errors too: openai_errors.py). Any other detail is returned as it is."""
    if not detail.startswith(_VALIDATION_FAILED):
        return detail
    query = request.scope.get("query_string", b"").decode("latin-1")
    called = client_path(request.scope) + (f"?{query}" if query else "")
    return f"{_VALIDATION_FAILED}{request.method} {called}"


MISSING_BODY = "The request body is missing: this route takes a JSON object."
NOT_AN_OBJECT = "The request body must be a JSON object"


def body_missing(exc: HTTPException) -> bool:
    """Whether Litestar refused the request for want of any body (it says ``'data'``, its
    handler argument's name, the ``KeyError`` of a body it did not get)."""
    errors = exc.extra
    return (
        isinstance(errors, list)
        and len(errors) == 1
        and isinstance(errors[0], dict)
        and errors[0].get("key") == "data"
        and errors[0].get("source") == "body"
        and errors[0].get("message") == "'data'"
    )


def _as_sent(request: Request[Any, Any, Any], error: Any) -> Any:
    """A validation error naming a query (header, cookie) parameter by the name the client sent,
    not by the handler's argument (``projectId``, not ``project_id``)."""
    if isinstance(error, dict) and error.get("source") == "body" and error.get("key") == "data":
        return _body_error(error)
    if not (isinstance(error, dict) and error.get("source") in ("query", "header", "cookie")):
        return error
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters[error["key"]]
    except (AttributeError, KeyError, TypeError):
        return error
    definition = parameter.kwarg_definition
    sent = getattr(definition, "name", None) or getattr(definition, error["source"], None)
    return {**error, "key": sent} if isinstance(sent, str) and sent else error


MISSING_FIELD = re.compile(r"missing required field `(\w+)`")


def _body_error(error: dict[str, Any]) -> dict[str, Any]:
    """Litestar names the body by its handler argument, ``data``, which is no field of ours:
    a missing field is named instead; a body that is not an object names no field."""
    said = str(error.get("message", ""))
    missing = MISSING_FIELD.search(said)
    if missing:
        return {**error, "key": missing.group(1)}
    return {"message": f"{NOT_AN_OBJECT}: {said}", "source": "body"}


def body_limit(request: Request[Any, Any, Any]) -> int | None:
    """The body size the route takes (its own limit, else the app's), if it can be told."""
    try:
        handler = request.route_handler
    except (AttributeError, KeyError):  # no route matched
        return None
    resolve = getattr(handler, "resolve_request_max_body_size", None)
    limit = resolve() if callable(resolve) else None
    return limit if isinstance(limit, int) else None


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("unhandled exception", exc_info=exc)
    return problem_response(request, status=500, code="internal_error", detail=GENERIC_DETAIL)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, WhalliError):
        return _domain_error(request, exc)
    if isinstance(exc, HTTPException):
        return _http_exception(request, exc)
    return _unexpected(request, exc)


def exception_handlers(
    openai_prefix: str | None = None,
    openai_handler: Callable[[Request[Any, Any, Any], Exception], Response[bytes]] | None = None,
) -> ExceptionHandlersMap:
    """Litestar ``exception_handlers``: every exception ends up as problem+json, except under
    ``openai_prefix``, where ``openai_handler`` answers (OpenAI's error shape)."""
    if openai_prefix is None or openai_handler is None:
        return {Exception: handle_exception}
    prefix, handler = openai_prefix, openai_handler

    def dispatch(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        path = routed_path(request.scope)
        if path == prefix or path.startswith(prefix + "/"):
            return handler(request, exc)
        return handle_exception(request, exc)

    return {Exception: dispatch}
