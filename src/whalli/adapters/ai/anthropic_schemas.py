"""A JSON Schema as Claude enforces one: its structured outputs' subset of JSON Schema.

A schema Claude is asked to enforce (``output_config.format``, a tool with ``strict``) is
compiled by the API into a grammar, which takes less than the JSON Schema OpenAI's strict mode
takes; it refuses the rest with a 400 (``For 'integer' type, property 'minimum' is not
supported``). What an OpenAI client sends strict (the SDK's ``parse`` of a model with
``Field(ge=1)``, ``pydantic_function_tool``) is reshaped, as Anthropic's own SDKs reshape it:

- every object has ``additionalProperties: false`` (the API requires it to be said);
- a list of types (``["string", "null"]``, OpenAI's way to make a field nullable) becomes an
  ``anyOf`` of one schema per type, each with the keywords of its type;
- ``oneOf`` becomes ``anyOf`` (the grammar cannot tell one from the other);
- ``$defs`` (and ``definitions``), ``$ref``, ``anyOf``, ``allOf``, ``enum``, ``const``,
  ``default``, ``title``, ``description``, ``required``, ``items``, the string ``format``\\ s it
  knows and ``minItems`` of 0 or 1 are kept;
- any other keyword (bounds, lengths, patterns, an unknown ``format``) cannot be enforced: it
  is appended to the schema's ``description`` (``{minimum: 1, maximum: 5}``), so that Claude
  still reads it and most likely follows it.
The schema is not changed in place.
"""

from __future__ import annotations

import json
from typing import Any

# The string formats the API enforces.
STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
_ANY_TYPE = ("title", "description", "enum", "const", "default")
# The keywords that belong to each type, kept when a list of types is split into an anyOf.
_TYPE_KEYWORDS = {
    "object": ("properties", "required", "additionalProperties", "minProperties", "maxProperties"),
    "array": ("items", "minItems", "maxItems", "uniqueItems", "contains", "prefixItems"),
    "string": ("format", "minLength", "maxLength", "pattern"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
    "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
}


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` in the subset Claude enforces (see the module docstring)."""
    rest = dict(schema)
    shaped: dict[str, Any] = {}
    for defs in ("$defs", "definitions"):
        found = rest.pop(defs, None)
        if isinstance(found, dict):
            shaped[defs] = {name: _shaped(sub) for name, sub in found.items()}
    ref = rest.pop("$ref", None)
    if ref is not None:
        shaped["$ref"] = ref
        description = rest.pop("description", None)
        if description is not None:
            shaped["description"] = description
        return shaped
    kind = rest.pop("type", None)
    if isinstance(kind, list):
        if len(kind) != 1:
            return shaped | _split(kind, rest)
        kind = kind[0]
    for key in ("anyOf", "oneOf"):
        variants = rest.pop(key, None)
        if isinstance(variants, list):
            shaped["anyOf"] = shaped.get("anyOf", []) + [_shaped(v) for v in variants]
    every = rest.pop("allOf", None)
    if isinstance(every, list):
        shaped["allOf"] = [_shaped(v) for v in every]
    if kind is not None:
        shaped["type"] = kind
    for key in _ANY_TYPE:
        if key in rest:
            shaped[key] = rest.pop(key)
    if kind == "object":
        properties = rest.pop("properties", None)
        shaped["properties"] = {name: _shaped(sub) for name, sub in (properties or {}).items()}
        rest.pop("additionalProperties", None)
        shaped["additionalProperties"] = False
        if "required" in rest:
            shaped["required"] = rest.pop("required")
    elif kind == "array":
        if "items" in rest:
            shaped["items"] = _shaped(rest.pop("items"))
        if rest.get("minItems") in (0, 1):
            shaped["minItems"] = rest.pop("minItems")
    elif kind == "string" and rest.get("format") in STRING_FORMATS:
        shaped["format"] = rest.pop("format")
    if rest:  # what cannot be enforced, said to the model instead
        said = ", ".join(f"{key}: {json.dumps(value)}" for key, value in rest.items())
        described = shaped.get("description")
        prefix = f"{described}\n\n" if isinstance(described, str) and described else ""
        shaped["description"] = f"{prefix}{{{said}}}"
    return shaped


def _shaped(schema: object) -> Any:
    # (true/false schemas, and anything that is not a schema, pass as they are)
    return strict_schema(schema) if isinstance(schema, dict) else schema


def _split(kinds: list[Any], rest: dict[str, Any]) -> dict[str, Any]:
    """A schema of several types as an ``anyOf`` of one schema per type."""
    common: dict[str, Any] = {k: rest[k] for k in ("title", "description", "default") if k in rest}
    variants = []
    for kind in kinds:
        keywords = _TYPE_KEYWORDS.get(kind, ()) if isinstance(kind, str) else ()
        own = {key: rest[key] for key in (*keywords, "enum", "const") if key in rest}
        if isinstance(own.get("enum"), list):  # each type keeps the values of its own
            own["enum"] = [v for v in own["enum"] if _is(kind, v)]
            if not own["enum"]:
                continue  # none of the values is of this type: it allows nothing
        if "const" in own and not _is(kind, own["const"]):
            continue
        variants.append(strict_schema({"type": kind, **own}))
    return {**common, "anyOf": variants}


def _is(kind: object, value: object) -> bool:
    """Whether ``value`` is of the JSON type ``kind``."""
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)
