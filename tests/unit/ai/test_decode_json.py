from __future__ import annotations

import pytest

from whalli.adapters.ai._http import decode_json
from whalli.domain.model.errors import ProviderError


def test_an_event_is_a_json_object() -> None:
    assert decode_json("p", '{"a": [1, "é"], "b": null}') == {"a": [1, "é"], "b": None}


def test_lone_surrogate_escapes_read_as_replacement_characters_anywhere() -> None:
    document = decode_json("p", '{"a": "x \\ud83d", "b": [{"c": "\\ude00 y"}], "\\udc00": 1}')

    assert document == {"a": "x \ufffd", "b": [{"c": "\ufffd y"}], "\ufffd": 1}
    assert document["a"].encode()  # valid UTF-8 (a lone surrogate would not encode)


def test_an_escaped_surrogate_pair_is_one_character() -> None:
    assert decode_json("p", '{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


@pytest.mark.parametrize("data", ["{", '{"a": NaN}', '{"a": Infinity}', "[1]", '"\\ud83d"', ""])
def test_what_is_not_a_json_object_is_a_malformed_event(data: str) -> None:
    with pytest.raises(ProviderError, match="malformed stream event"):
        decode_json("p", data)


def test_with_halves_only_a_strings_edge_halves_are_kept_for_the_joiner() -> None:
    document = decode_json(
        "p", '{"a": "x \\ud83d", "b": "\\ude00 y", "c": "in \\ud83d the middle", "\\ud83d": 1}',
        halves=True,
    )  # fmt: skip

    assert document == {"a": "x \ud83d", "b": "\ude00 y", "c": "in \ufffd the middle", "\ufffd": 1}
