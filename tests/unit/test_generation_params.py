"""GenerationParams: what a reply may be sampled with, and how the prompt cache tells them apart."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.domain.model.chats import GenerationParams, MessageRole, PromptMessage
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.prompt_cache import cache_key

PROMPT = (PromptMessage(role=MessageRole.USER, content="hello"),)


def key(params: GenerationParams) -> str:
    return cache_key(model_id="openai/gpt-4o-mini", messages=PROMPT, params=params)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"top_p": 1.01}, "topP"), ({"top_p": -0.1}, "topP"),
        ({"presence_penalty": 2.5}, "presencePenalty"),
        ({"frequency_penalty": -2.01}, "frequencyPenalty"),
        ({"seed": 2**63}, "seed"), ({"seed": -(2**63) - 1}, "seed"),
        ({"stop": ()}, "stop"), ({"stop": ("a",) * 5}, "stop"), ({"stop": ("",)}, "stop"),
        ({"stop": ("x" * 201,)}, "stop"),
    ],
)  # fmt: skip
def test_out_of_range_params_are_refused_naming_the_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        GenerationParams(**fields)  # type: ignore[arg-type]
    assert refused.value.details["field"] == field


def test_the_edges_of_each_range_are_accepted() -> None:
    GenerationParams(top_p=0, presence_penalty=-2, frequency_penalty=2, seed=2**63 - 1)
    GenerationParams(top_p=1, seed=-(2**63), stop=("a",) * 4)
    GenerationParams(stop=("x" * 200,))


@given(
    name=st.sampled_from(["top_p", "stop", "seed", "presence_penalty", "frequency_penalty"]),
    data=st.data(),
)
def test_each_sampling_param_changes_the_cache_key(name: str, data: st.DataObject) -> None:
    values = {
        "top_p": st.floats(0, 1),
        "stop": st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4).map(tuple),
        "seed": st.integers(-(2**63), 2**63 - 1),
        "presence_penalty": st.floats(-2, 2),
        "frequency_penalty": st.floats(-2, 2),
    }
    value = data.draw(values[name])

    assert key(GenerationParams(**{name: value})) != key(GenerationParams())  # type: ignore[arg-type]


def test_a_float_param_written_as_an_integer_is_the_same_key() -> None:
    assert key(GenerationParams(top_p=1)) == key(GenerationParams(top_p=1.0))
    assert key(GenerationParams(presence_penalty=-0.0)) == key(GenerationParams(presence_penalty=0))


def test_a_session_stored_before_the_sampling_params_still_decodes() -> None:
    old = msgspec.json.encode({"temperature": 0.5, "max_tokens": 10})

    assert msgspec.json.decode(old, type=GenerationParams) == GenerationParams(
        temperature=0.5, max_tokens=10
    )
