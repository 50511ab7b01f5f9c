"""Schemas Claude is asked to enforce, reshaped into the subset of JSON Schema it takes."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.ai.anthropic_schemas import strict_schema

# What the API refuses in an enforced schema (public reports of its 400s, Anthropic's SDKs)
UNSUPPORTED = {
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "maxItems", "uniqueItems", "minProperties",
    "maxProperties", "oneOf",
}  # fmt: skip


def problems(schema: object, at: str = "$") -> list[str]:
    """Where ``schema`` holds what Claude would refuse to enforce."""
    if isinstance(schema, list):
        return [p for n, item in enumerate(schema) for p in problems(item, f"{at}[{n}]")]
    if not isinstance(schema, dict):
        return []
    found = [f"{at}.{key}" for key in schema if key in UNSUPPORTED]
    if isinstance(schema.get("type"), list):
        found.append(f"{at}.type (a list)")
    if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
        found.append(f"{at}: additionalProperties")
    if schema.get("type") == "array" and schema.get("minItems", 0) not in (0, 1):
        found.append(f"{at}.minItems")
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            found += [p for name, sub in value.items() for p in problems(sub, f"{at}.{name}")]
        elif key not in ("enum", "const", "default", "description", "title", "required"):
            found += problems(value, f"{at}.{key}")
    return found


def test_bounds_go_to_the_description_and_objects_are_closed() -> None:
    """What pydantic writes for ``Field(ge=1, le=5, description=...)`` and a list of at least
    two tags of at most three characters."""
    asked = {
        "type": "object",
        "properties": {
            "stars": {"type": "integer", "minimum": 1, "maximum": 5, "description": "Rating"},
            "tags": {
                "type": "array", "minItems": 2,
                "items": {"type": "string", "maxLength": 3},
            },
        },
        "required": ["stars", "tags"],
    }  # fmt: skip

    sent = strict_schema(asked)

    assert sent == {
        "type": "object",
        "properties": {
            "stars": {"type": "integer", "description": "Rating\n\n{minimum: 1, maximum: 5}"},
            "tags": {
                "type": "array",
                "items": {"type": "string", "description": "{maxLength: 3}"},
                "description": "{minItems: 2}",
            },
        },
        "additionalProperties": False,
        "required": ["stars", "tags"],
    }


def test_a_nullable_field_is_an_any_of_with_each_types_own_keywords() -> None:
    asked = {
        "type": ["string", "null"], "format": "email", "maxLength": 80,
        "description": "Where to write", "enum": ["a@b.c", None],
    }  # fmt: skip

    assert strict_schema(asked) == {
        "description": "Where to write",
        "anyOf": [
            {
                "type": "string", "enum": ["a@b.c"], "format": "email",
                "description": "{maxLength: 80}",
            },
            {"type": "null", "enum": [None]},
        ],
    }  # fmt: skip


def test_definitions_references_and_one_of_are_kept_in_claudes_terms() -> None:
    asked = {
        "$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "type": "object",
        "properties": {
            "pet": {"$ref": "#/$defs/Pet"},
            "either": {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^a"}]},
            "when": {"type": "string", "format": "date-time"},
            "odd": {"type": "string", "format": "color"},
            "some": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        },
    }

    sent = strict_schema(asked)

    assert sent["$defs"]["Pet"]["additionalProperties"] is False
    props = sent["properties"]
    assert props["pet"] == {"$ref": "#/$defs/Pet"}
    assert props["either"] == {
        "anyOf": [{"type": "integer"}, {"type": "string", "description": '{pattern: "^a"}'}]
    }
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["odd"] == {"type": "string", "description": '{format: "color"}'}
    assert props["some"] == {"type": "array", "items": {"type": "integer"}, "minItems": 1}


def test_an_empty_object_is_closed_too() -> None:
    assert strict_schema({"type": "object", "properties": {}}) == {
        "type": "object", "properties": {}, "additionalProperties": False
    }  # fmt: skip


# --- any schema ----------------------------------------------------------------------------------
names = st.text("abcxyz", min_size=1, max_size=4)
scalars = st.sampled_from(["string", "integer", "number", "boolean", "null"])
bounds = st.dictionaries(
    st.sampled_from([*sorted(UNSUPPORTED - {"oneOf"}), "minItems", "format"]),
    st.one_of(st.integers(0, 9), st.sampled_from(["email", "color", "^x"])),
    max_size=3,
)


def with_bounds(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return bounds.map(lambda extra: {**extra, **schema})


leaves = st.one_of(
    scalars.map(lambda t: {"type": t}),
    st.lists(scalars, min_size=2, max_size=3, unique=True).map(lambda ts: {"type": ts}),
).flatmap(with_bounds)
schemas = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.dictionaries(names, inner, max_size=3).map(
            lambda props: {"type": "object", "properties": props}
        ),
        inner.map(lambda items: {"type": "array", "items": items}),
        st.lists(inner, min_size=1, max_size=3).map(lambda vs: {"oneOf": vs}),
        st.lists(inner, min_size=1, max_size=2).map(lambda vs: {"anyOf": vs}),
    ).flatmap(with_bounds),
    max_leaves=12,
)


@given(schemas)
def test_any_schema_comes_out_as_claude_takes_it_and_the_callers_is_untouched(
    schema: dict[str, Any],
) -> None:
    kept = copy.deepcopy(schema)

    sent = strict_schema(schema)

    assert problems(sent) == []
    assert schema == kept
    assert strict_schema(sent) == sent  # nothing more to change in what it gives
