"""JSON request bodies that cannot be read get a 400 that says why.

msgspec refuses some with an error that does not (a lone high surrogate escape, ``"\\ud800"``,
reads as "Input data was truncated"), others with an exception Litestar does not map (a 500):
``UnicodeDecodeError`` for invalid UTF-8 inside a string, ``RecursionError`` for arrays or
objects nested about a thousand deep. All are the client's mistake.

Litestar converts a decoded body to the handler's type leniently: ``"0.5"`` becomes a number,
``"true"`` a boolean. A JSON API takes JSON's types, so a body that only that leniency would
accept is refused here, with the same 400 naming the field that Litestar gives for any other
wrong type (``Expected `float | null`, got `str```, key ``params.temperature``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException, ValidationException

# a \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one, or a \uDC00-\uDFFF one alone
# (an escape starts at a backslash after an even run of them: in `a\\\ud800` the first
# two are one backslash, the third starts an escape)
_ESCAPE = rb"(?<!\\)(?:\\\\)*\\u"
_LONE_SURROGATE = re.compile(
    _ESCAPE + rb"[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})" + _ESCAPE + rb"[dD][c-fC-F][0-9a-fA-F]{2}"
)
LONE_SURROGATE = (
    "JSON is malformed: a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff "
    "without its pair), which is not text."
)

TOO_DEEP = "JSON is malformed: it is nested too deeply."

OUT_OF_RANGE = "JSON is malformed: the number at {} is out of range."


NOT_UTF8 = "JSON is malformed: the body is not valid UTF-8."


class JsonRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        value = await self._decoded()
        _check_types(self, value)
        return value

    async def _decoded(self) -> Any:
        try:
            return await super().json()
        except UnicodeDecodeError:  # (msgspec 0.22; 0.23 raises its own DecodeError instead)
            raise SerializationException(NOT_UTF8) from None
        except RecursionError:  # (msgspec's parser recurses once per level of nesting)
            raise SerializationException(TOO_DEEP) from None
        except SerializationException:
            body = await self.body()
            if not _utf8(body):
                raise SerializationException(NOT_UTF8) from None
            if _LONE_SURROGATE.search(body):
                raise SerializationException(LONE_SURROGATE) from None
            if (where := _infinite_at(body)) is not None:
                raise SerializationException(OUT_OF_RANGE.format(where)) from None
            raise


def _check_types(request: Request[Any, Any, Any], value: Any) -> None:
    """Refuse a body whose values have other JSON types than the handler's ``data`` asks for,
    where Litestar's lenient conversion would accept them. A body wrong in other ways is left
    to Litestar, which reports it as before."""
    body_type = _body_type(request)
    if body_type is None:
        return
    try:
        msgspec.convert(value, body_type, strict=True, str_keys=True)
    except TypeError:  # a type msgspec cannot convert to: Litestar decides alone
        return
    except msgspec.ValidationError as strict_error:
        try:
            msgspec.convert(value, body_type, strict=False, str_keys=True)
        except msgspec.ValidationError:
            return  # wrong whatever the rules: Litestar's own 400
        message, _, where = str(strict_error).partition(" - at `")
        error = {"message": message, "source": "body"}
        key = where.rstrip("`").removeprefix("$").removeprefix(".")
        if key:
            error["key"] = key
        raise ValidationException(
            detail=f"Validation failed for {request.method} {request.url.path}", extra=[error]
        ) from None


def _body_type(request: Request[Any, Any, Any]) -> Any:
    """The type of the handler's ``data`` (its body), or ``None``."""
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters.get("data")
    except (AttributeError, KeyError):
        return None
    return None if parameter is None else parameter.annotation


def _infinite_at(body: bytes) -> str | None:
    """Where a number too large for a float is (``params.temperature``, ``messages[2].x``), if
    the body is otherwise JSON: msgspec's own error elides the path."""
    try:
        found = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return _path_of_infinity(found, "")


def _path_of_infinity(value: Any, path: str) -> str | None:
    if isinstance(value, float) and math.isinf(value):
        return path or "the top level"
    items: Any = ()
    if isinstance(value, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    for where, item in items:
        if (found := _path_of_infinity(item, where)) is not None:
            return found
    return None


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
