"""Structured outputs: the format a caller asks a reply in (OpenAI's ``response_format``).

Only the OpenAI-compatible API (``/v1``) asks for one. ``text``, the default, is no format at
all (``None``): a request asking for it is the same request as one that does not (same cache
key, same provider request). The others:
- ``json_object`` (JSON mode): the reply is one JSON object, of no particular shape;
- ``json_schema`` (structured outputs): the reply is JSON following ``schema``, a JSON Schema
  object, under a ``name``; ``strict`` asks the provider to enforce the schema exactly.

Rules (OpenAI's, so that a request refused by OpenAI is refused here too, before any provider
is called); field names in errors are that API's (``response_format.json_schema.name``):
- the type is ``text``, ``json_object`` or ``json_schema``;
- type ``json_schema`` needs a ``json_schema`` (one sent with ``json_object`` is ignored,
  like the other request fields Whalli has no use for);
- its name is 1 to 64 letters, digits, ``_`` or ``-``;
- its schema, when given, is a JSON object.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.tools import FUNCTION_NAME

_FIELD = "response_format"
FORMAT_NAME = FUNCTION_NAME  # the same rule as a function's name: ^[a-zA-Z0-9_-]{1,64}$


class FormatType(StrEnum):
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


class JsonSchema(Value, frozen=True, kw_only=True):
    """The schema of a ``json_schema`` format; ``schema`` ``None``: any JSON (OpenAI's too)."""

    name: str
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        field = f"{_FIELD}.json_schema.name"
        # Struct __init__ checks no types: what a caller sent may be anything
        name: object = self.name
        if not isinstance(name, str) or not FORMAT_NAME.fullmatch(name):
            shown = name[:80] if isinstance(name, str) else name
            raise InvalidInput(
                f"{field} must be 1 to 64 letters, digits, underscores or dashes "
                f"({shown!r} given).",
                field=field,
            )
        schema: object = self.schema
        if schema is not None and not isinstance(schema, dict):
            field = f"{_FIELD}.json_schema.schema"
            raise InvalidInput(
                f"{field} must be a JSON Schema object ({type(schema).__name__} given).",
                field=field,
            )


class ResponseFormat(Value, frozen=True, kw_only=True):
    """A format other than text; ``json_schema`` with ``JSON_SCHEMA`` only."""

    type: FormatType
    json_schema: JsonSchema | None = None

    def __post_init__(self) -> None:
        if self.type is FormatType.JSON_SCHEMA and self.json_schema is None:
            field = f"{_FIELD}.json_schema"
            raise InvalidInput(f"{field} is required with type 'json_schema'.", field=field)
        if self.type is FormatType.JSON_OBJECT and self.json_schema is not None:
            raise ValueError("a json_object format has no json_schema")  # a bug, not input

    def as_sent(self) -> dict[str, Any]:
        """The format in OpenAI's shape, its ``None`` fields left out: what OpenAI-compatible
        servers are sent, and what the prompt cache's key hashes."""
        sent: dict[str, Any] = {"type": str(self.type)}
        if self.json_schema is not None:
            fields = msgspec.structs.asdict(self.json_schema).items()
            sent["json_schema"] = {name: value for name, value in fields if value is not None}
        return sent

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON Schema the reply follows (``None``: any JSON object)."""
        return None if self.json_schema is None else self.json_schema.schema


def response_format(
    kind: str | None,
    *,
    name: str | None = None,
    schema: object = None,
    strict: bool | None = None,
    description: str | None = None,
    with_json_schema: bool = False,
) -> ResponseFormat | None:
    """The format of a request from its parts as sent (``with_json_schema``: a ``json_schema``
    object was sent, whose fields are the others); ``None`` for ``text``. Raises
    ``InvalidInput`` naming the field (see the module docstring)."""
    if kind == "text":
        return None
    if kind not in (FormatType.JSON_OBJECT, FormatType.JSON_SCHEMA):
        field = f"{_FIELD}.type"
        raise InvalidInput(
            f"{field} {kind!r} is not one of 'text', 'json_object', 'json_schema'.", field=field
        )
    json_schema = None
    if with_json_schema and kind == FormatType.JSON_SCHEMA:
        if name is None:
            field = f"{_FIELD}.json_schema.name"
            raise InvalidInput(f"{field} is required.", field=field)
        json_schema = JsonSchema(
            name=name,
            schema=schema,  # type: ignore[arg-type]  # checked by JsonSchema
            strict=strict,
            description=description,
        )
    return ResponseFormat(type=FormatType(kind), json_schema=json_schema)
