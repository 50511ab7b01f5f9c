"""Automatic chat titles: cleaning answers, the policy, the setting and its start-up check."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from tests.unit.services.test_title_chat import CATALOG
from tests.unit.test_container import UNREACHABLE
from whalli.adapters.prometheus.chat_metrics import PrometheusChatMetrics
from whalli.config import ConfigError, load_settings
from whalli.container import build_container, chat_title_policy
from whalli.domain.model.chat_titles import TitlePolicy, clean_title, title_prompt
from whalli.domain.model.chats import TITLE_MAX


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("Baking Sourdough at Home", "Baking Sourdough at Home"),
        ('"Baking Sourdough."', "Baking Sourdough"),
        ("Title: Baking Sourdough", "Baking Sourdough"),
        ('title:  "Baking   Sourdough"', "Baking Sourdough"),
        ("`Baking Sourdough`", "Baking Sourdough"),
        ("“Baking Sourdough”", "Baking Sourdough"),
        ("\n\n  Baking Sourdough\nbecause you asked", "Baking Sourdough"),
        ("''", ""),
        ("   ", ""),
        ("Title:", ""),
        ("__init__ versus __new__", "__init__ versus __new__"),  # identifiers keep their _
        ("## Sourdough Basics", "Sourdough Basics"),
        ("**Title:**\n\nSourdough Basics", "Sourdough Basics"),  # the label on a line alone
        ("Sourdough\x00 Basics\x07", "Sourdough Basics"),  # what Postgres refuses, or rings
        ("\u200b\ufeff\u200b", ""),  # only invisible characters: no title
        ("Sour\u200bdough", "Sourdough"),
        ("Students' Guide", "Students' Guide"),
    ],
)
def test_a_models_answer_is_cleaned_into_a_title(answer: str, title: str) -> None:
    assert clean_title(answer) == title


@given(st.text())
def test_a_cleaned_title_is_short_single_line_and_trimmed(answer: str) -> None:
    title = clean_title(answer)
    assert len(title) <= TITLE_MAX
    assert title == " ".join(title.split())
    assert not title.endswith(".")
    assert all(unicodedata.category(ch)[0] != "C" for ch in title)  # nothing invisible


def test_the_prompt_cuts_each_side_to_about_two_thousand_characters() -> None:
    system, user = title_prompt("q" * 5_000, "a" * 5_000)
    assert "6 words" in system.content
    assert 2_000 <= user.content.count("q") <= 2_001
    assert 2_000 <= user.content.count("a") <= 2_001


def test_the_policy_picks_the_replys_model_a_configured_one_or_none() -> None:
    assert TitlePolicy().model_for("openai/gpt-4o", "openai") == "openai/gpt-4o"
    fixed = TitlePolicy(model="openai/gpt-4o-mini")
    assert fixed.model_for("openai/gpt-4o", "openai") == "openai/gpt-4o-mini"
    assert fixed.model_for("dev/echo", "dev") is None
    assert TitlePolicy().model_for("dev/echo", "dev") is None
    assert TitlePolicy(model="off").model_for("openai/gpt-4o", "openai") is None


def test_the_setting_defaults_to_the_replys_model_and_takes_off() -> None:
    default = load_settings(UNREACHABLE, dotenv=None)
    assert default.chat_titles == "model"
    assert chat_title_policy(default, lambda: CATALOG) == TitlePolicy(model="model")
    off = load_settings({**UNREACHABLE, "WHALLI_CHAT_TITLES": "OFF"}, dotenv=None)
    assert chat_title_policy(off, lambda: CATALOG) == TitlePolicy(model="off")


def test_a_cleaned_long_answer_does_not_end_with_a_period() -> None:
    assert clean_title("a" * 119 + ". more words") == "a" * 119


def test_a_title_model_of_the_catalog_with_its_provider_configured_is_accepted() -> None:
    settings = load_settings(
        {**UNREACHABLE, "WHALLI_CHAT_TITLES": "openai/gpt-4o-mini", "WHALLI_OPENAI_API_KEY": "k"},
        dotenv=None,
    )
    assert chat_title_policy(settings, lambda: CATALOG).model == "openai/gpt-4o-mini"


def test_a_title_model_not_in_the_catalog_stops_the_start() -> None:
    settings = load_settings(
        {**UNREACHABLE, "WHALLI_CHAT_TITLES": "openai/gpt-9", "WHALLI_OPENAI_API_KEY": "k"},
        dotenv=None,
    )
    with pytest.raises(ConfigError, match="WHALLI_CHAT_TITLES='openai/gpt-9' is neither"):
        chat_title_policy(settings, lambda: CATALOG)


def test_a_title_model_whose_provider_is_not_configured_stops_the_start() -> None:
    settings = load_settings({**UNREACHABLE, "WHALLI_CHAT_TITLES": "openai/gpt-4o"}, dotenv=None)
    with pytest.raises(ConfigError, match="provider 'openai' is not configured"):
        chat_title_policy(settings, lambda: CATALOG)


def test_a_blank_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="WHALLI_CHAT_TITLES must be"):
        load_settings({**UNREACHABLE, "WHALLI_CHAT_TITLES": " "}, dotenv=None)


OPENAI = {"WHALLI_OPENAI_API_KEY": "k"}


def test_the_container_checks_the_setting_against_its_catalog_file() -> None:
    """The real catalog file, through the container's resource (what start-up initialises)."""
    bad = build_container(
        load_settings({**UNREACHABLE, "WHALLI_CHAT_TITLES": "nobody/none"}, dotenv=None)
    )
    with pytest.raises(ConfigError, match="'nobody/none' is neither"):
        bad.adapters.chat_titles()
    good = build_container(
        load_settings(
            {
                **UNREACHABLE,
                "WHALLI_CHAT_TITLES": "openai/gpt-4o-mini",
                "WHALLI_OPENAI_API_KEY": "k",
            },
            dotenv=None,
        )
    )
    assert good.adapters.chat_titles() == TitlePolicy(model="openai/gpt-4o-mini")
    good.adapters.chat_titles.shutdown()


def test_title_jobs_are_counted_by_outcome_in_prometheus() -> None:
    def count(outcome: str) -> float:
        value = REGISTRY.get_sample_value("whalli_chat_titles_total", {"outcome": outcome})
        return value or 0.0

    before = count("titled"), count("kept")
    metrics = PrometheusChatMetrics()
    metrics.chat_titled(outcome="titled")
    metrics.chat_titled(outcome="titled")
    metrics.chat_titled(outcome="kept")

    assert (count("titled"), count("kept")) == (before[0] + 2, before[1] + 1)


def test_the_development_model_as_title_model_stops_the_start() -> None:
    """It only echoes: it would title every chat with the start of its prompt."""
    settings = load_settings(
        {**UNREACHABLE, "WHALLI_CHAT_TITLES": "dev/echo", "WHALLI_DEV_MODELS": "true"},
        dotenv=None,
    )
    with pytest.raises(ConfigError, match="WHALLI_CHAT_TITLES='dev/echo': the development model"):
        chat_title_policy(settings, lambda: CATALOG)
