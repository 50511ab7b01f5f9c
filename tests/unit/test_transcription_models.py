"""Transcription models in the catalog: their prices, their plans, and how a file lists them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.catalog.toml_catalog import default_catalog_path, load_catalog
from whalli.domain.model.catalog import ModelCatalog
from whalli.domain.model.errors import (
    AccountDisabled,
    InvalidCatalog,
    InvalidInput,
    ModelNotInPlan,
)
from whalli.domain.model.transcription_models import (
    MAX_REPORTED_SECONDS,
    TranscriptionModel,
    TranscriptionSpec,
    TranscriptionUsage,
    reported_seconds,
)
from whalli.domain.model.users import Plan, User

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SHIPPED = load_catalog(default_catalog_path())
# What OpenAI's gpt-4o transcribe models say they used (200 prompt, 1,000 audio, 300 output)
TOKENS = TranscriptionUsage(input_text_tokens=200, input_audio_tokens=1_000, output_tokens=300)

CHAT = """
[[model]]
id = "dev/echo"
provider = "dev"
upstream = "echo"
min_plan = "free"
input_usd_per_mtok = 0
output_usd_per_mtok = 0
context_window = 100
"""


def a_user(plan: Plan = Plan.FREE, *, disabled: bool = False) -> User:
    user = User.create(id=uuid.uuid4(), email="ada@example.com", now=NOW, plan=plan)
    user.disabled = disabled
    return user


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_whisper_costs_six_tenths_of_a_cent_a_minute_of_audio() -> None:
    whisper = SHIPPED.transcription_model("whisper-1")

    assert whisper.provider == "openai"
    assert whisper.cost_usd(TranscriptionUsage(seconds=60)) == pytest.approx(0.006)
    assert whisper.cost_usd(TranscriptionUsage(seconds=90)) == pytest.approx(0.009)
    assert whisper.cost_usd(TranscriptionUsage()) == 0


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # 200 x $2.50 + 1,000 x $6.00 + 300 x $10.00, per million tokens
        ("gpt-4o-transcribe", (200 * 2.50 + 1_000 * 6.00 + 300 * 10.00) / 1e6),
        # 200 x $1.25 + 1,000 x $3.00 + 300 x $5.00, per million tokens
        ("gpt-4o-mini-transcribe", (200 * 1.25 + 1_000 * 3.00 + 300 * 5.00) / 1e6),
    ],
)
def test_the_gpt_4o_transcribe_models_cost_their_text_audio_and_output_tokens(
    model: str, expected: float
) -> None:
    spec = SHIPPED.transcription_model(model)

    assert spec.cost_usd(TOKENS) == pytest.approx(expected)
    assert spec.cost_usd(TranscriptionUsage(input_audio_tokens=1_000_000)) == pytest.approx(
        6.00 if model == "gpt-4o-transcribe" else 3.00
    )


def test_a_model_the_catalog_does_not_list_costs_nothing_and_is_in_every_plan() -> None:
    local = SHIPPED.transcription_model("Systran/faster-whisper-large-v3")

    assert local.spec is None
    assert local.provider == "openai-compatible"
    assert local.cost_usd(TranscriptionUsage(seconds=3_600)) == 0
    assert local.cost_usd(TOKENS) == 0
    local.ensure_allowed(a_user(Plan.FREE))


def test_every_shipped_transcription_model_is_free_for_every_plan() -> None:
    for name in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"):
        model = SHIPPED.transcription_model(name)
        assert model.spec is not None
        assert model.spec.min_plan is Plan.FREE
        model.ensure_allowed(a_user(Plan.FREE))


def test_a_model_above_the_plan_is_refused_and_a_disabled_account_uses_none() -> None:
    pro = TranscriptionModel(
        name="whisper-1",
        spec=TranscriptionSpec(
            id="whisper-1", provider="openai", min_plan=Plan.PRO, usd_per_minute=0.006
        ),
    )

    with pytest.raises(ModelNotInPlan, match=r"does not include the transcription model whisper"):
        pro.ensure_allowed(a_user(Plan.FREE))
    pro.ensure_allowed(a_user(Plan.PRO))
    pro.ensure_allowed(a_user(Plan.ENTERPRISE))
    with pytest.raises(AccountDisabled, match="disabled"):
        pro.ensure_allowed(a_user(Plan.ENTERPRISE, disabled=True))


@given(
    seconds=st.floats(min_value=0, max_value=1e6),
    text=st.integers(min_value=0, max_value=10**9),
    audio=st.integers(min_value=0, max_value=10**9),
    output=st.integers(min_value=0, max_value=10**9),
)
def test_a_price_is_never_negative_and_grows_with_what_was_used(
    seconds: float, text: int, audio: int, output: int
) -> None:
    used = TranscriptionUsage(
        seconds=seconds, input_text_tokens=text, input_audio_tokens=audio, output_tokens=output
    )
    more = TranscriptionUsage(
        seconds=seconds + 1, input_text_tokens=text + 1, input_audio_tokens=audio + 1,
        output_tokens=output + 1,
    )  # fmt: skip
    for name in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"):
        model = SHIPPED.transcription_model(name)
        assert 0 <= model.cost_usd(used) < model.cost_usd(more)


@pytest.mark.parametrize(
    ("said", "believed"),
    [(42.5, 42.5), (MAX_REPORTED_SECONDS, MAX_REPORTED_SECONDS), (MAX_REPORTED_SECONDS + 1, 0),
     (1e308, 0), (0, 0), (-3, 0), (float("nan"), 0), (float("inf"), 0)],
)  # fmt: skip
def test_a_duration_past_a_day_or_not_a_positive_number_counts_as_none(
    said: float, believed: float
) -> None:
    assert reported_seconds(said) == believed


def test_a_negative_usage_is_refused() -> None:
    with pytest.raises(InvalidInput, match="cannot be negative"):
        SHIPPED.transcription_model("whisper-1").cost_usd(TranscriptionUsage(seconds=-1))


def test_a_catalog_refuses_a_transcription_model_listed_twice_or_badly_priced() -> None:
    spec = TranscriptionSpec(id="whisper-1", provider="openai", min_plan=Plan.FREE)
    with pytest.raises(InvalidCatalog, match=r"'whisper-1' is listed twice"):
        ModelCatalog([], transcription=[spec, spec])
    negative = TranscriptionSpec(
        id="whisper-1", provider="openai", min_plan=Plan.FREE, usd_per_minute=-0.006
    )
    with pytest.raises(InvalidCatalog, match="prices must be finite and not negative"):
        ModelCatalog([], transcription=[negative])
    acme = TranscriptionSpec(id="x", provider="acme", min_plan=Plan.FREE)
    with pytest.raises(InvalidCatalog, match=r"provider 'acme' is unknown"):
        ModelCatalog([], transcription=[acme])


def test_a_file_lists_transcription_models_apart_from_chat_models(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        CHAT + '\n[[transcription]]\nid = "whisper-1"\nprovider = "openai"\n'
        'min_plan = "pro"\nusd_per_minute = 0.01\n',
    )

    catalog = load_catalog(path)

    assert [spec.id for spec in catalog] == ["dev/echo"]
    whisper = catalog.transcription_model("whisper-1")
    assert whisper.spec is not None
    assert whisper.spec.min_plan is Plan.PRO
    assert whisper.cost_usd(TranscriptionUsage(seconds=30)) == pytest.approx(0.005)
    assert load_catalog(write(tmp_path, CHAT)).transcription_model("whisper-1").spec is None


def test_a_bad_transcription_entry_is_refused_naming_the_file_and_the_entry(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path, CHAT + '\n[[transcription]]\nid = "whisper-1"\nprovider = "openai"\n'
        'min_plan = "free"\nusd_per_hour = 1\n',
    )  # fmt: skip

    with pytest.raises(
        InvalidCatalog,
        match=r"models\.toml: transcription entry 1 \('whisper-1'\): Object contains unknown "
        r"field `usd_per_hour`",
    ):
        load_catalog(path)
