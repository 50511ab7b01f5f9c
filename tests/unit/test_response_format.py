"""The response format (JSON mode, structured outputs): OpenAI's rules, errors naming the field
in OpenAI's names, ``text`` as no format at all."""

from __future__ import annotations

from typing import Any

import pytest

from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.response_format import (
    FormatType,
    JsonSchema,
    ResponseFormat,
    response_format,
)

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_text_is_no_format() -> None:
    assert response_format("text") is None
    assert response_format("text", name="ignored", with_json_schema=True) is None


def test_json_mode_has_no_schema() -> None:
    asked = response_format("json_object")

    assert asked == ResponseFormat(type=FormatType.JSON_OBJECT)
    assert asked is not None
    assert asked.schema is None


def test_a_json_schema_is_kept_as_given() -> None:
    asked = response_format(
        "json_schema", name="weather-1_a", schema=SCHEMA, strict=True,
        description="The weather.", with_json_schema=True,
    )  # fmt: skip

    assert asked == ResponseFormat(
        type=FormatType.JSON_SCHEMA,
        json_schema=JsonSchema(
            name="weather-1_a", schema=SCHEMA, strict=True, description="The weather."
        ),
    )
    assert asked.schema == SCHEMA


def test_a_json_schema_without_schema_is_any_json() -> None:
    asked = response_format("json_schema", name="free", with_json_schema=True)

    assert asked is not None
    assert asked.schema is None


def test_a_json_schema_sent_with_json_mode_is_ignored() -> None:
    asked = response_format("json_object", name="x", schema=SCHEMA, with_json_schema=True)

    assert asked == ResponseFormat(type=FormatType.JSON_OBJECT)


BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown_type": ({"kind": "xml"}, "response_format.type", "'xml' is not one of"),
    "no_type": ({"kind": None}, "response_format.type", "None is not one of"),
    "type_in_capitals": ({"kind": "JSON_OBJECT"}, "response_format.type", "is not one of"),
    "json_schema_missing": (
        {"kind": "json_schema"}, "response_format.json_schema", "is required with type"
    ),
    "name_missing": (
        {"kind": "json_schema", "schema": SCHEMA, "with_json_schema": True},
        "response_format.json_schema.name", "is required",
    ),
    "name_empty": (
        {"kind": "json_schema", "name": "", "with_json_schema": True},
        "response_format.json_schema.name", "1 to 64 letters",
    ),
    "name_with_a_space": (
        {"kind": "json_schema", "name": "my schema", "with_json_schema": True},
        "response_format.json_schema.name", "'my schema' given",
    ),
    "name_too_long": (
        {"kind": "json_schema", "name": "a" * 65, "with_json_schema": True},
        "response_format.json_schema.name", "1 to 64 letters",
    ),
    "name_with_a_dot": (
        {"kind": "json_schema", "name": "a.b", "with_json_schema": True},
        "response_format.json_schema.name", "1 to 64 letters",
    ),
    "schema_a_list": (
        {"kind": "json_schema", "name": "a", "schema": [SCHEMA], "with_json_schema": True},
        "response_format.json_schema.schema", r"must be a JSON Schema object \(list given\)",
    ),
    "schema_a_string": (
        {"kind": "json_schema", "name": "a", "schema": "{}", "with_json_schema": True},
        "response_format.json_schema.schema", r"\(str given\)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD.values()), ids=list(BAD))
def test_what_openai_refuses_is_refused_naming_the_field(
    case: tuple[dict[str, Any], str, str],
) -> None:
    sent, field, message = case
    kind = sent.pop("kind")

    with pytest.raises(InvalidInput, match=message) as raised:
        response_format(kind, **sent)

    assert raised.value.details["field"] == field
    assert field in raised.value.message


def test_names_of_64_characters_of_every_allowed_kind_are_accepted() -> None:
    name = ("aZ09_-" * 11)[:64]

    asked = response_format("json_schema", name=name, with_json_schema=True)

    assert asked is not None
    assert asked.json_schema is not None
    assert asked.json_schema.name == name


def test_a_json_schema_format_cannot_be_built_without_its_schema_object() -> None:
    with pytest.raises(InvalidInput, match="is required with type 'json_schema'"):
        ResponseFormat(type=FormatType.JSON_SCHEMA)
    with pytest.raises(ValueError, match="has no json_schema"):
        ResponseFormat(type=FormatType.JSON_OBJECT, json_schema=JsonSchema(name="a"))
