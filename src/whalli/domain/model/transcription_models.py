"""Speech-to-text models: what a transcription used, what it costs, who may use the model.

Rules:
- a transcription model of the catalog (``TranscriptionSpec``) is priced as its provider bills
  it: per minute of audio (``usd_per_minute``: whisper-1), or per million tokens of input text
  (the prompt), input audio and output (the transcript: OpenAI's gpt-4o transcribe models);
  prices are finite and not negative, the id unique, the provider one whose price list the
  catalog names (``TRANSCRIPTION_PROVIDERS``);
- the configured model (``TranscriptionModel``) is looked up by its name (what
  ``WHALLI_TRANSCRIPTION_MODEL`` sends on the wire); a name the catalog does not list (a
  self-hosted server's model) is free for every plan and costs 0, its provider
  ``openai-compatible``;
- a plan includes a transcription model as it includes a chat model (``min_plan``); a
  disabled account may use none;
- a duration a provider says (or a header claims) is believed from 0 to
  ``MAX_REPORTED_SECONDS`` (``reported_seconds``); beyond, it counts as none, as a token count
  beyond ``chats.MAX_REPORTED_TOKENS`` does.
"""

from __future__ import annotations

import math

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.errors import (
    AccountDisabled,
    InvalidCatalog,
    InvalidInput,
    ModelNotInPlan,
)
from whalli.domain.model.users import Plan, User

# The providers whose transcription prices the catalog lists (the adapter speaks OpenAI's
# /audio/transcriptions; a self-hosted server's models are not listed: they cost nothing).
TRANSCRIPTION_PROVIDERS: frozenset[str] = frozenset({"openai"})
# The provider a usage record names for a model the catalog does not list.
UNLISTED_PROVIDER = "openai-compatible"
SECONDS_PER_MINUTE = 60
TOKENS_PER_PRICE_UNIT = 1_000_000
# The longest audio one transcription can be said to have used: a 25 MB file (OpenAI's limit)
# holds far less, and a provider call is cut after an hour; a duration above it (a bug, or a
# hostile server) is no duration, never stored, charged or summed (where it would overflow).
MAX_REPORTED_SECONDS = 24 * 60 * 60


def reported_seconds(value: float) -> float:
    """A duration in seconds as a provider said it: a finite number above 0 and at most
    ``MAX_REPORTED_SECONDS``, else 0 (none said, or one that cannot be true)."""
    if math.isfinite(value) and 0 < value <= MAX_REPORTED_SECONDS:
        return float(value)
    return 0.0


class TranscriptionUsage(Value, frozen=True, kw_only=True):
    """What one transcription used, as its provider counted it: the audio's duration in
    seconds and, for a model billed by tokens, its tokens (all 0: nothing said or measured)."""

    seconds: float = 0.0
    input_text_tokens: int = 0  # the prompt
    input_audio_tokens: int = 0  # the audio
    output_tokens: int = 0  # the transcript

    @property
    def input_tokens(self) -> int:
        return self.input_text_tokens + self.input_audio_tokens


class Transcript(Value, frozen=True, kw_only=True):
    """The spoken text of an audio file, and what transcribing it used."""

    text: str
    usage: TranscriptionUsage = msgspec.field(default_factory=TranscriptionUsage)


class TranscriptionSpec(Value, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One speech-to-text model of the catalog: ``id`` is the provider's name for it."""

    id: str
    provider: str
    min_plan: Plan
    usd_per_minute: float = 0.0  # of audio
    input_text_usd_per_mtok: float = 0.0
    input_audio_usd_per_mtok: float = 0.0
    output_usd_per_mtok: float = 0.0

    def cost_usd(self, usage: TranscriptionUsage) -> float:
        """The price of one transcription that used ``usage``, in USD."""
        if min(usage.seconds, usage.input_text_tokens, usage.input_audio_tokens) < 0 or (
            usage.output_tokens < 0 or not math.isfinite(usage.seconds)
        ):
            raise InvalidInput("A transcription's usage cannot be negative.", model=self.id)
        tokens = (
            usage.input_text_tokens * self.input_text_usd_per_mtok
            + usage.input_audio_tokens * self.input_audio_usd_per_mtok
            + usage.output_tokens * self.output_usd_per_mtok
        ) / TOKENS_PER_PRICE_UNIT
        return usage.seconds / SECONDS_PER_MINUTE * self.usd_per_minute + tokens


class TranscriptionModel(Value, frozen=True, kw_only=True):
    """The configured transcription model: its name and its catalog entry (``None``: a model
    the catalog does not list, free and costing nothing)."""

    name: str
    spec: TranscriptionSpec | None = None

    @property
    def provider(self) -> str:
        return self.spec.provider if self.spec is not None else UNLISTED_PROVIDER

    def cost_usd(self, usage: TranscriptionUsage) -> float:
        return self.spec.cost_usd(usage) if self.spec is not None else 0.0

    def ensure_allowed(self, user: User) -> None:
        """Raises ``AccountDisabled`` for a disabled account and ``ModelNotInPlan`` when its
        plan is below the model's minimum plan (as ``catalog.ensure_model_allowed``)."""
        if user.disabled:
            raise AccountDisabled()
        if self.spec is not None and not user.plan.includes(self.spec.min_plan):
            raise ModelNotInPlan(
                f"Your plan ({user.plan}) does not include the transcription model "
                f"{self.name}; it needs {self.spec.min_plan}.",
                model=self.name,
            )


def check_transcription_spec(spec: TranscriptionSpec) -> None:
    """Raises ``InvalidCatalog`` naming what is wrong with ``spec``."""
    problems: list[str] = []
    if not spec.id.strip():
        problems.append("the id is empty")
    if spec.provider not in TRANSCRIPTION_PROVIDERS:
        known = ", ".join(sorted(TRANSCRIPTION_PROVIDERS))
        problems.append(f"provider {spec.provider!r} is unknown (known: {known})")
    prices = (
        spec.usd_per_minute,
        spec.input_text_usd_per_mtok,
        spec.input_audio_usd_per_mtok,
        spec.output_usd_per_mtok,
    )
    if not all(math.isfinite(p) and p >= 0 for p in prices):
        problems.append("prices must be finite and not negative")
    if problems:
        name = spec.id or "(no id)"
        raise InvalidCatalog(f"Transcription model {name!r}: {'; '.join(problems)}.", model=spec.id)
