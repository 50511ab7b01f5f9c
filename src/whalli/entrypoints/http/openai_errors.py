"""OpenAI's wire format for /v1, errors: every error on /v1 (unknown routes included) in OpenAI's
``{"error": {...}}`` shape, with the field in ``param`` (see ``openai_wire``).

A request /api refuses with a 422 is a 400 here: OpenAI answers its parameter errors so, and its
SDKs raise ``BadRequestError`` for a 400 (``UnprocessableEntityError`` for a 422, which no client
written for OpenAI catches). Every other status is /api's."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ExceptionHandlersMap

from whalli.domain.model.errors import InvalidToken, WhalliError
from whalli.entrypoints.http.problems import (
    GENERIC_DETAIL,
    MISSING_BODY,
    MISSING_FIELD,
    NOT_AN_OBJECT,
    as_called,
    body_limit,
    body_missing,
    retry_after_header,
    status_for,
)

log = structlog.get_logger("whalli.http")


class ErrorDetail(msgspec.Struct, kw_only=True):
    message: str
    type: str
    code: str | None
    param: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail


def error_type(status: int) -> str:
    """OpenAI's ``error.type`` for a status (clients mostly dispatch on the status itself)."""
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )


def openai_status(status: int) -> int:
    """The status /v1 answers for one /api would answer (a 422 is OpenAI's 400)."""
    return 400 if status == 422 else status


def error_body(error: WhalliError) -> ErrorBody:
    field = error.details.get("field")
    return ErrorBody(
        error=ErrorDetail(
            message=error.message,
            type=error_type(openai_status(status_for(error))),
            code=error.code,
            param=snake_field(field) if isinstance(field, str) else None,
        )
    )


def snake_field(field: str) -> str:
    """OpenAI's name of a request field our errors name in camelCase (``maxTokens``)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), field)


def _response(status: int, body: ErrorBody, headers: dict[str, str]) -> Response[bytes]:
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def handle_openai_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Every error under /v1 as ``{"error": {"message", "type", "param", "code"}}``; statuses
    come from problems.py's one mapping, a 422 answered as OpenAI's 400."""
    headers: dict[str, str] = {}
    if isinstance(exc, WhalliError):
        status = openai_status(status_for(exc))
        if status == 401:
            invalid = isinstance(exc, InvalidToken)
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if invalid else "Bearer"
        if (retry := retry_after_header(exc)) is not None:
            headers["Retry-After"] = retry
        if status >= 500:
            log.error("request failed", code=exc.code, exc_info=exc)
        return _response(status, error_body(exc), headers)
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        body = _http_error(request, exc)
        if exc.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE and (
            limit := body_limit(request)
        ):  # say how large a body may be (an image too large for it, say)
            message = f"The request body is larger than this route accepts (at most {limit} bytes)."
            body = ErrorBody(error=msgspec.structs.replace(body.error, message=message))
        return _response(openai_status(exc.status_code), body, dict(exc.headers or {}))
    log.error("unhandled exception", exc_info=exc)
    detail = ErrorDetail(message=GENERIC_DETAIL, type="server_error", code="internal_error")
    return _response(500, ErrorBody(error=detail), headers)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> ErrorBody:
    """Litestar's own errors (a body that does not decode, an unknown method): its validation
    errors name the field and the rule, never more than the client's own input."""
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    message, param = as_called(request, exc.detail), None
    if body_missing(exc):
        message = MISSING_BODY
    elif isinstance(exc.extra, list) and exc.extra and isinstance(exc.extra[0], dict):
        first = exc.extra[0]
        said = str(first.get("message", ""))
        message = f"{message}: {said}".rstrip(": ")
        param = first.get("key") if isinstance(first.get("key"), str) else None
        missing = MISSING_FIELD.search(said)
        if missing and param == "data":  # the body lacks a field: name it, not the body
            param = missing.group(1)
        elif param == "data":  # the body itself is wrong (not an object): no field to name
            param, message = None, f"{NOT_AN_OBJECT}: {said}"
    detail = ErrorDetail(message=message, type=error_type(exc.status_code), code=code, param=param)
    return ErrorBody(error=detail)


def openai_exception_handlers() -> ExceptionHandlersMap:
    # Exception itself too: the app's handler would answer problem+json, which SDKs cannot read.
    return {Exception: handle_openai_exception}
