"""A preset's rules (domain.model.presets): names, and what it fills in of a start."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from whalli.domain.model.chats import GenerationParams
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.presets import PRESET_NAME_MAX, Preset, applied, preset_name

T0 = datetime(2030, 1, 1, tzinfo=UTC)
PRESET = Preset.create(
    id=uuid.uuid4(), user_id=uuid.uuid4(), name="Coder", model="openai/gpt-4o", now=T0,
    system_prompt="  Code only.  ", params=GenerationParams(temperature=0.1, max_tokens=300),
)  # fmt: skip


def test_names_are_folded_and_bounded() -> None:
    assert preset_name("  Terse \n coder ") == "Terse coder"
    assert preset_name("x" * PRESET_NAME_MAX) == "x" * PRESET_NAME_MAX
    for bad in ("", "   ", "x" * (PRESET_NAME_MAX + 1)):
        with pytest.raises(InvalidInput, match="name needs 1 to 80") as caught:
            preset_name(bad)
        assert caught.value.details["field"] == "name"


@pytest.mark.parametrize(
    "name", ["\u200b\u200b", "\u2060", "\u200e\u200f", "\ufeff", "\u200b \u200d"]
)
def test_a_name_of_only_invisible_characters_is_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="at least one visible character") as caught:
        preset_name(name)
    assert caught.value.details["field"] == "name"


def test_format_characters_beside_visible_ones_stay() -> None:
    assert preset_name(" Family 👩\u200d👩\u200d👧 ") == "Family 👩\u200d👩\u200d👧"


def test_a_preset_s_system_prompt_is_cleaned_like_a_chat_s() -> None:
    assert PRESET.system_prompt == "Code only."
    blank = Preset.create(id=uuid.uuid4(), user_id=uuid.uuid4(), name="n", model="m", now=T0,
                          system_prompt="   ")  # fmt: skip
    assert blank.system_prompt is None
    with pytest.raises(InvalidInput, match="NUL"):
        Preset.create(id=uuid.uuid4(), user_id=uuid.uuid4(), name="n", model="m", now=T0,
                      system_prompt="a\x00b")  # fmt: skip


def test_a_bare_start_takes_everything_from_the_preset() -> None:
    model, params, system_prompt = applied(
        PRESET, model=None, params=GenerationParams(), system_prompt=None, new_chat=True
    )
    assert (model, params, system_prompt) == ("openai/gpt-4o", PRESET.params, "Code only.")


def test_what_the_start_gives_wins_field_by_field() -> None:
    model, params, system_prompt = applied(
        PRESET, model="anthropic/claude-3-5-haiku", params=GenerationParams(temperature=0.9),
        system_prompt="", new_chat=True,
    )  # fmt: skip
    assert model == "anthropic/claude-3-5-haiku"
    assert params == GenerationParams(temperature=0.9, max_tokens=300)
    assert system_prompt == ""  # blank: this chat opts out of any system prompt


def test_an_existing_chat_keeps_its_own_system_prompt() -> None:
    _, _, system_prompt = applied(
        PRESET, model=None, params=GenerationParams(), system_prompt=None, new_chat=False
    )
    assert system_prompt is None
