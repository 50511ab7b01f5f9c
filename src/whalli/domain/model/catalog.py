"""The model catalog: which models exist, who may use them, what they cost, what replaces them.

Rules (checked once, when the catalog is built, so that a bad file stops the service at start-up
rather than failing a chat later):
- every model id is unique, and its provider is one Whalli has an adapter for;
- prices (USD per million tokens, prompt-cache reads and writes included) are not negative,
  the context window is positive;
- only a model of a provider whose adapter sends images reads them (``vision``), and only one
  whose adapter asks for a reasoning effort takes one (``reasoning``); the efforts it takes
  (``reasoning_efforts``, default the four classic ones) are named only for such a model,
  without repeats, and a Claude model (whose thinking is asked by the classic four) names only
  those;
- the sampling parameters a model refuses (``refuses``, and ``refuses_while_reasoning``, for a
  model that reasons only when asked an effort other than ``none``) are named among
  ``SAMPLING_PARAMS``, each once;
- only a model of a provider whose adapter answers in a response_format enforces schemas
  (``strict_outputs``), and only a reasoning model of Anthropic thinks adaptively
  (``adaptive_thinking``);
- an output cap (``max_output_tokens``), when known, is positive and within the context window;
- a fallback names another model of the catalog, no chain of fallbacks comes back to where it
  started, and a fallback is offered to every plan its model is offered to (so that falling back
  never hands a user a model their plan does not include).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Set

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.chats import (
    CLASSIC_EFFORTS,
    GenerationParams,
    ReasoningEffort,
    TokenUsage,
)
from whalli.domain.model.errors import (
    AccountDisabled,
    InvalidCatalog,
    InvalidInput,
    ModelNotFound,
    ModelNotInPlan,
)
from whalli.domain.model.transcription_models import (
    TranscriptionModel,
    TranscriptionSpec,
    check_transcription_spec,
)
from whalli.domain.model.users import Plan, User

# The providers Whalli has chat model adapters for; "dev" is the local echo model.
KNOWN_PROVIDERS: frozenset[str] = frozenset(
    {"openai", "anthropic", "xai", "openai-compatible", "dev"}
)

# The providers whose adapters pass tools on (dev/echo only echoes text).
TOOL_CALLING_PROVIDERS: frozenset[str] = frozenset(
    {"openai", "anthropic", "xai", "openai-compatible"}
)

# The providers whose adapters answer in a response_format (JSON mode, structured outputs).
STRUCTURED_OUTPUT_PROVIDERS: frozenset[str] = TOOL_CALLING_PROVIDERS

# The providers whose adapters send images on (dev/echo only echoes text). Whether a model of
# theirs reads images is the catalog's ``vision`` of that model.
VISION_PROVIDERS: frozenset[str] = TOOL_CALLING_PROVIDERS

# The providers whose adapters ask for a reasoning effort (OpenAI's ``reasoning_effort``,
# Anthropic's extended thinking; dev/echo "thinks" aloud when asked). Whether a model of theirs
# takes an effort is the catalog's ``reasoning`` of that model.
REASONING_PROVIDERS: frozenset[str] = TOOL_CALLING_PROVIDERS | {"dev"}

# The providers whose adapters send OpenAI's ``verbosity`` (to a model that takes it).
VERBOSITY_PROVIDERS: frozenset[str] = frozenset({"openai", "xai", "openai-compatible"})

# The providers whose adapters ask a model to think adaptively (Anthropic's).
ADAPTIVE_PROVIDERS: frozenset[str] = frozenset({"anthropic"})

# The reply cap a request that sets none is sent with, for the providers whose APIs require one
# (Anthropic's ``max_tokens``): this, or the model's output cap when lower (``default_max_tokens``).
# A provider not named here is sent none: its models write until they are done. (A cap of 1,024
# ended a Claude reply after about 750 words.)
REQUIRED_REPLY_CAPS: dict[str, int] = {"anthropic": 8_192}

# The thinking budget of each effort, for the providers whose requests ask for one
# (Anthropic's ``budget_tokens``, at least 1,024; an adaptive model's ``max_tokens`` leaves it
# the room of the effort sent). Its ``max_tokens`` is then this budget plus the answer's room,
# so the budget is kept free of the context window as well (``thinking_room``).
THINKING_PROVIDERS: frozenset[str] = ADAPTIVE_PROVIDERS
THINKING_BUDGETS: dict[ReasoningEffort, int] = {
    ReasoningEffort.MINIMAL: 1_024,
    ReasoningEffort.LOW: 2_048,
    ReasoningEffort.MEDIUM: 8_192,
    ReasoningEffort.HIGH: 24_576,
}

# The room kept for the reasoning of a model that reasons before it answers, where its provider
# asks no budget (OpenAI's and xAI's reasoning models: their reasoning tokens count against the
# window and ``max_completion_tokens`` before the answer's, and a prompt that leaves them too
# little ends the reply at ``length`` with no text; OpenAI advises keeping about 25,000), by the
# effort asked; asked none, the default effort's (medium).
REASONING_ROOM_PROVIDERS: frozenset[str] = frozenset({"openai", "xai", "openai-compatible"})
REASONING_ROOMS: dict[ReasoningEffort, int] = {
    ReasoningEffort.NONE: 0,
    ReasoningEffort.MINIMAL: 2_048,
    ReasoningEffort.LOW: 4_096,
    ReasoningEffort.MEDIUM: 12_288,
    ReasoningEffort.HIGH: 24_576,
    ReasoningEffort.XHIGH: 32_768,
}

TOKENS_PER_PRICE_UNIT = 1_000_000

# A provider's price of prompt tokens read from its prompt cache, and written to it, as a share
# of the model's input price, where the provider has one rule for all its models (Anthropic:
# reads 0.1, writes to its 5-minute cache 1.25, to its 1-hour cache 2); a provider not named
# here charges the input price unless a model lists its own (``cached_input_usd_per_mtok``:
# OpenAI's and xAI's discounts differ by model).
CACHE_READ_SHARE: dict[str, float] = {"anthropic": 0.1}
CACHE_WRITE_SHARE: dict[str, float] = {"anthropic": 1.25}
CACHE_WRITE_1H_SHARE: dict[str, float] = {"anthropic": 2.0}

# The sampling parameters a model may refuse (``ModelSpec.refuses``), by their names in
# ``GenerationParams`` (and on /v1). A refused one is not sent: ``stop`` is applied by Whalli
# instead (the reply is cut where a sequence begins), the others are left to the model.
SAMPLING_PARAMS: tuple[str, ...] = (
    "temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty",
)  # fmt: skip


class ModelSpec(Value, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One model: ``id`` is Whalli's name for it, ``upstream`` the provider's."""

    id: str
    provider: str
    upstream: str
    min_plan: Plan
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    context_window: int
    fallback: str | None = None
    # The price of 1M prompt tokens read from the provider's prompt cache, and of 1M written
    # to it, when not the provider's usual share of the input price (``CACHE_READ_SHARE``,
    # ``CACHE_WRITE_SHARE``: Anthropic's 0.1 and 1.25; other providers' reads are discounted
    # only where listed, their writes cost the input price)
    cached_input_usd_per_mtok: float | None = None
    cache_write_usd_per_mtok: float | None = None
    # ... and of 1M written to Anthropic's 1-hour cache (``CACHE_WRITE_1H_SHARE``: 2)
    cache_write_1h_usd_per_mtok: float | None = None
    # Whether the model reads images (vision); only a model of VISION_PROVIDERS can.
    vision: bool = False
    # Whether the model takes a reasoning effort; only a model of REASONING_PROVIDERS can.
    # (Any model's streamed reasoning is shown: a server may send it unasked.)
    reasoning: bool = False
    # Whether it reasons before every answer though it takes no effort (xAI's Grok 4, which
    # refuses one): its first token may come after a long silence, as a ``reasoning`` model's
    always_reasons: bool = False
    # The efforts it takes, when not the ``CLASSIC_EFFORTS`` (xAI's grok-3-mini: low and
    # high; OpenAI's o-series: no minimal; GPT-5.2: none to xhigh); only for a ``reasoning``
    # model
    reasoning_efforts: tuple[ReasoningEffort, ...] | None = None
    # Whether it takes OpenAI's ``verbosity`` (GPT-5 and later); asked of another model, it is
    # not sent. Only a model of an OpenAI-wire provider (VERBOSITY_PROVIDERS)
    verbosity: bool = False
    # The sampling parameters (``SAMPLING_PARAMS``) it refuses with an error when sent
    # (OpenAI's reasoning models: temperature, top_p, the penalties, stop; xAI's: the
    # penalties and stop). Asked for anyway, they are not sent (see ``sent``)
    refuses: tuple[str, ...] = ()
    # Those it refuses only while it reasons: asked an effort other than ``none``, its default
    # (GPT-5.2 takes temperature and top_p at effort none only); only for a ``reasoning`` model
    # that takes ``none``
    refuses_while_reasoning: tuple[str, ...] = ()
    # The most tokens it writes in one reply, thinking included, when known (a larger
    # ``maxTokens`` is refused before the call; Claude's thinking budget stays under it)
    max_output_tokens: int | None = None
    # Whether the model enforces a JSON Schema exactly when asked ``strict`` (a json_schema
    # response_format, a function): OpenAI's structured outputs, Claude's (4.5 and later),
    # which the Anthropic adapter then asks for (``output_config.format``, a tool's
    # ``strict``); only a model of STRUCTURED_OUTPUT_PROVIDERS
    strict_outputs: bool = False
    # Whether the model decides how much to think, asked for an effort rather than a budget
    # (Claude's adaptive thinking: Opus and Sonnet 4.6, where a budget is deprecated, and
    # later models, which refuse one); only a ``reasoning`` model of ADAPTIVE_PROVIDERS
    adaptive_thinking: bool = False
    # False when the model refuses a conversation that ends with its own turn (a prefill of
    # its reply: Claude Opus and Sonnet 4.6); only a model of ADAPTIVE_PROVIDERS (Anthropic's)
    prefill: bool = True

    @property
    def efforts(self) -> tuple[ReasoningEffort, ...]:
        """The reasoning efforts it may be asked for (none unless it takes one)."""
        if not (self.reasoning and self.provider in REASONING_PROVIDERS):
            return ()
        return self.reasoning_efforts or CLASSIC_EFFORTS

    def thinking_room(self, effort: ReasoningEffort | None) -> int:
        """The tokens a request asking for ``effort`` asks room for besides the answer's: the
        thinking budget of a model whose provider asks for one (``THINKING_BUDGETS``; an
        adaptive model asked minimal is asked low); for a model that reasons first whose
        provider asks none, the room its reasoning takes (``REASONING_ROOMS``; asked no effort:
        the default's); else 0."""
        if self.provider not in THINKING_PROVIDERS:
            if self.provider not in REASONING_ROOM_PROVIDERS or not self.thinks_first:
                return 0  # (the dev model's "thinking" is one sentence)
            if effort is not None and effort not in self.efforts:
                return 0
            return REASONING_ROOMS[effort or ReasoningEffort.MEDIUM]
        if effort is None or effort not in self.efforts:
            return 0
        if self.adaptive_thinking and effort is ReasoningEffort.MINIMAL:
            effort = ReasoningEffort.LOW
        return THINKING_BUDGETS.get(effort, 0)

    def takes_effort(self, effort: ReasoningEffort | None) -> bool:
        """Whether a request asking for ``effort`` may go to it as asked (``None``: always)."""
        return effort is None or effort in self.efforts

    def fitted(self, params: GenerationParams) -> GenerationParams:
        """``params`` as this model takes them (for a fallback asked what its model was): an
        effort it does not take replaced by the nearest one it takes (``nearest_effort``),
        ``max_tokens`` cut to its output cap. The same object when nothing changes."""
        effort, cap = params.reasoning_effort, self.max_output_tokens
        other_effort = not self.takes_effort(effort)
        cut = cap is not None and params.max_tokens is not None and params.max_tokens > cap
        if not (other_effort or cut):
            return params
        return msgspec.structs.replace(
            params,
            reasoning_effort=self.nearest_effort(effort) if other_effort else effort,
            max_tokens=cap if cut else params.max_tokens,
        )

    def nearest_effort(self, effort: ReasoningEffort | None) -> ReasoningEffort | None:
        """``effort`` if it takes it; else the one it takes nearest to it (in the order none,
        minimal ... xhigh; the greater of two as near); ``None`` if it takes no effort."""
        if effort is None or effort in self.efforts:
            return effort
        if not self.efforts:
            return None
        order = list(ReasoningEffort)
        asked = order.index(effort)
        return min(self.efforts, key=lambda e: (abs(order.index(e) - asked), -order.index(e)))

    @property
    def thinks_first(self) -> bool:
        """Whether its first token may come after a long silence: it reasons before it answers
        (``reasoning``, or ``always_reasons``)."""
        return self.reasoning or self.always_reasons

    def refused(self, effort: ReasoningEffort | None) -> tuple[str, ...]:
        """The sampling parameters it refuses when asked ``effort`` (``None``: its default)."""
        if effort is None or effort is ReasoningEffort.NONE or not self.refuses_while_reasoning:
            return self.refuses
        return (*self.refuses, *self.refuses_while_reasoning)

    def sent(self, params: GenerationParams) -> tuple[GenerationParams, tuple[str, ...]]:
        """``params`` as they are sent to it, and the stop sequences to cut its reply at here:
        the parameters it refuses left out (and a ``verbosity`` it does not take), its ``stop``
        (when refused) applied by Whalli. The same object and no stops when it refuses none of
        those asked."""
        refused = [
            name for name in self.refused(params.reasoning_effort)
            if getattr(params, name) is not None
        ]  # fmt: skip
        if params.verbosity is not None and not self.verbosity:
            refused.append("verbosity")  # a preference: the model writes as it does
        if not refused:
            return params, ()
        local = params.stop if "stop" in refused and params.stop is not None else ()
        return msgspec.structs.replace(params, **dict.fromkeys(refused)), local

    @property
    def default_max_tokens(self) -> int | None:
        """The reply cap sent when a request sets none (``REQUIRED_REPLY_CAPS``), within the
        model's output cap and a quarter of its window (the most of it trimming keeps for a
        reply by default: ``ContextLimits.build``), so that the prompt trimming leaves and the
        cap together fit the window; ``None``: none is sent."""
        cap = REQUIRED_REPLY_CAPS.get(self.provider)
        if cap is None:
            return None
        if self.max_output_tokens is not None:
            cap = min(cap, self.max_output_tokens)
        return max(1, min(cap, self.context_window // 4))

    @property
    def calls_tools(self) -> bool:
        """Whether the model can be offered tools (its provider's adapter sends them)."""
        return self.provider in TOOL_CALLING_PROVIDERS

    @property
    def structured_outputs(self) -> bool:
        """Whether the model can be asked for a ``response_format`` (JSON, a JSON Schema)."""
        return self.provider in STRUCTURED_OUTPUT_PROVIDERS

    @property
    def sees_images(self) -> bool:
        """Whether the model can be sent images (``vision``, and its adapter sends them)."""
        return self.vision and self.provider in VISION_PROVIDERS

    def cost_usd(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        cached: int = 0,
        written: int = 0,
        written_1h: int = 0,
    ) -> float:
        """The price of one call, in USD: of its ``prompt_tokens``, ``cached`` were read from
        the provider's prompt cache and ``written`` written to it, ``written_1h`` of those to
        its 1-hour cache (each priced as such; more than the prompt's count are taken as all
        of it, reads first, and more hour-long writes than writes as all of them)."""
        if min(prompt_tokens, completion_tokens, cached, written, written_1h) < 0:
            raise InvalidInput("Token counts cannot be negative.", model=self.id)
        cached = min(cached, prompt_tokens)
        written = min(written, prompt_tokens - cached)
        written_1h = min(written_1h, written)
        fresh = prompt_tokens - cached - written
        return (
            fresh * self.input_usd_per_mtok
            + cached * self.cache_read_price
            + (written - written_1h) * self.cache_write_price
            + written_1h * self.cache_write_1h_price
            + completion_tokens * self.output_usd_per_mtok
        ) / TOKENS_PER_PRICE_UNIT

    def price(self, usage: TokenUsage) -> float:
        """The price of a call that used ``usage``, in USD (see ``cost_usd``)."""
        return self.cost_usd(
            usage.prompt_tokens,
            usage.completion_tokens,
            cached=usage.cached_prompt_tokens,
            written=usage.cache_write_tokens,
            written_1h=usage.cache_write_1h_tokens,
        )

    @property
    def cache_read_price(self) -> float:
        """The price of 1M prompt tokens read from the provider's prompt cache."""
        if self.cached_input_usd_per_mtok is not None:
            return self.cached_input_usd_per_mtok
        return self.input_usd_per_mtok * CACHE_READ_SHARE.get(self.provider, 1.0)

    @property
    def cache_write_price(self) -> float:
        """The price of 1M prompt tokens written to the provider's prompt cache."""
        if self.cache_write_usd_per_mtok is not None:
            return self.cache_write_usd_per_mtok
        return self.input_usd_per_mtok * CACHE_WRITE_SHARE.get(self.provider, 1.0)

    @property
    def cache_write_1h_price(self) -> float:
        """The price of 1M prompt tokens written to the provider's 1-hour prompt cache."""
        if self.cache_write_1h_usd_per_mtok is not None:
            return self.cache_write_1h_usd_per_mtok
        return self.input_usd_per_mtok * CACHE_WRITE_1H_SHARE.get(self.provider, 1.0)


class ModelCatalog:
    """The validated, ordered set of models (see the module docstring for the rules)."""

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        *,
        providers: frozenset[str] = KNOWN_PROVIDERS,
        transcription: Iterable[TranscriptionSpec] = (),
    ) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            _check_spec(spec, providers)
            if spec.id in self._specs:
                raise InvalidCatalog(f"Model {spec.id!r} is listed twice.", model=spec.id)
            self._specs[spec.id] = spec
        for spec in self._specs.values():
            self._check_fallbacks(spec)
        # The speech-to-text models (``transcription_models``), apart: they are no chat model.
        self._transcription: dict[str, TranscriptionSpec] = {}
        for entry in transcription:
            check_transcription_spec(entry)
            if entry.id in self._transcription:
                raise InvalidCatalog(
                    f"Transcription model {entry.id!r} is listed twice.", model=entry.id
                )
            self._transcription[entry.id] = entry

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._specs

    def get(self, model_id: str) -> ModelSpec:
        """Raises ``ModelNotFound``."""
        try:
            return self._specs[model_id]
        except KeyError:
            raise ModelNotFound(f"Model {model_id!r} is not in the catalog.") from None

    def available_for(self, plan: Plan, enabled_providers: Set[str]) -> list[ModelSpec]:
        """Models the plan includes whose provider is configured, in catalog order."""
        return [
            spec
            for spec in self._specs.values()
            if plan.includes(spec.min_plan) and spec.provider in enabled_providers
        ]

    def fallbacks(self, model_id: str) -> list[ModelSpec]:
        """The models to try, in order, after ``model_id`` failed (its fallback chain)."""
        chain: list[ModelSpec] = []
        spec = self.get(model_id)
        while spec.fallback is not None:
            spec = self._specs[spec.fallback]
            chain.append(spec)
        return chain

    def cost_usd(self, spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> float:
        """The price of one call to ``spec``, in USD."""
        return spec.cost_usd(prompt_tokens, completion_tokens)

    def transcription_model(self, name: str) -> TranscriptionModel:
        """The transcription model called ``name`` (its entry, if the catalog lists it)."""
        return TranscriptionModel(name=name, spec=self._transcription.get(name))

    def _check_fallbacks(self, spec: ModelSpec) -> None:
        seen = [spec.id]
        current = spec
        while current.fallback is not None:
            target = self._specs.get(current.fallback)
            if target is None:
                raise InvalidCatalog(
                    f"Model {current.id!r} falls back to {current.fallback!r}, "
                    "which is not in the catalog.",
                    model=current.id,
                )
            if target.id in seen:
                cycle = " -> ".join([*seen[seen.index(target.id) :], target.id])
                raise InvalidCatalog(
                    f"Model {spec.id!r} has a fallback cycle: {cycle}.", model=spec.id
                )
            if not current.min_plan.includes(target.min_plan):
                raise InvalidCatalog(
                    f"Model {current.id!r} falls back to {target.id!r}, which needs a higher plan "
                    f"({target.min_plan}) than the model itself ({current.min_plan}).",
                    model=current.id,
                )
            seen.append(target.id)
            current = target


def _check_spec(spec: ModelSpec, providers: frozenset[str]) -> None:
    name = spec.id or "(no id)"
    problems: list[str] = []
    if not spec.id.strip():
        problems.append("the id is empty")
    if not spec.upstream.strip():
        problems.append("the upstream model name is empty")
    if spec.provider not in providers:
        known = ", ".join(sorted(providers))
        problems.append(f"provider {spec.provider!r} is unknown (known: {known})")
    prices = (
        spec.input_usd_per_mtok,
        spec.output_usd_per_mtok,
        spec.cache_read_price,
        spec.cache_write_price,
        spec.cache_write_1h_price,
    )
    if not all(math.isfinite(p) and p >= 0 for p in prices):
        problems.append("prices must be finite and not negative")
    if spec.context_window <= 0:
        problems.append("the context window must be positive")
    if spec.vision and spec.provider not in VISION_PROVIDERS:
        problems.append(f"provider {spec.provider!r} cannot send images (vision)")
    if spec.reasoning and spec.provider not in REASONING_PROVIDERS:
        problems.append(f"provider {spec.provider!r} cannot ask for reasoning (reasoning)")
    if spec.strict_outputs and spec.provider not in STRUCTURED_OUTPUT_PROVIDERS:
        problems.append(f"provider {spec.provider!r} cannot enforce schemas (strict_outputs)")
    if spec.adaptive_thinking and not (spec.reasoning and spec.provider in ADAPTIVE_PROVIDERS):
        problems.append("adaptive_thinking needs reasoning = true and an anthropic model")
    if spec.verbosity and spec.provider not in VERBOSITY_PROVIDERS:
        problems.append(f"provider {spec.provider!r} cannot ask for a verbosity (verbosity)")
    if not spec.prefill and spec.provider not in ADAPTIVE_PROVIDERS:
        problems.append("prefill = false is for an anthropic model")
    if spec.reasoning_efforts is not None:
        if not spec.reasoning:
            problems.append("reasoning_efforts needs reasoning = true")
        efforts = spec.reasoning_efforts
        if not efforts or len(set(efforts)) != len(efforts):
            problems.append("reasoning_efforts must name at least one effort, each once")
        if spec.provider == "anthropic" and not set(efforts) <= set(CLASSIC_EFFORTS):
            problems.append("an anthropic model takes only minimal, low, medium and high efforts")
    problems.extend(_refusal_problems(spec))
    cap = spec.max_output_tokens
    if cap is not None and not 0 < cap <= max(spec.context_window, 0):
        problems.append("max_output_tokens must be positive and within the context window")
    if problems:
        raise InvalidCatalog(f"Model {name!r}: {'; '.join(problems)}.", model=spec.id)


def _refusal_problems(spec: ModelSpec) -> list[str]:
    problems = []
    known = ", ".join(SAMPLING_PARAMS)
    for field, names in (
        ("refuses", spec.refuses),
        ("refuses_while_reasoning", spec.refuses_while_reasoning),
    ):
        if not set(names) <= set(SAMPLING_PARAMS):
            unknown = ", ".join(sorted(set(names) - set(SAMPLING_PARAMS)))
            problems.append(f"{field} names {unknown}, not sampling parameters ({known})")
        if len(set(names)) != len(names):
            problems.append(f"{field} names a parameter twice")
    both = set(spec.refuses) & set(spec.refuses_while_reasoning)
    if both:
        problems.append(f"{', '.join(sorted(both))} in both refuses and refuses_while_reasoning")
    if spec.refuses_while_reasoning and ReasoningEffort.NONE not in spec.efforts:
        problems.append("refuses_while_reasoning needs a reasoning model that takes none")
    return problems


def check_reasoning(spec: ModelSpec, effort: object, *, field: str = "reasoningEffort") -> None:
    """A reasoning effort (``effort`` not ``None``) only for a model that takes that one (else
    ``InvalidInput`` naming ``field``, and the efforts it takes)."""
    if effort is None or effort in spec.efforts:
        return
    if not spec.efforts:
        raise InvalidInput(
            f"Model {spec.id!r} does not take a reasoning effort.", field=field, model=spec.id
        )
    taken = " or ".join(e.value for e in spec.efforts)
    raise InvalidInput(
        f"Model {spec.id!r} takes a reasoning effort of {taken}, not {effort}.",
        field=field, model=spec.id,
    )  # fmt: skip


def check_max_tokens(spec: ModelSpec, max_tokens: int | None, *, field: str = "maxTokens") -> None:
    """``max_tokens`` (when given) within the model's output cap, when known (else
    ``InvalidInput`` naming ``field`` and the cap)."""
    cap = spec.max_output_tokens
    if max_tokens is not None and cap is not None and max_tokens > cap:
        raise InvalidInput(
            f"Model {spec.id!r} writes at most {cap:,} tokens in a reply; {field} was "
            f"{max_tokens:,}.",
            field=field, model=spec.id,
        )  # fmt: skip


def ensure_model_allowed(user: User, spec: ModelSpec) -> None:
    """The policy for using a model: the account is active and its plan includes the model.

    Raises ``AccountDisabled`` for a disabled account (whatever its plan) and ``ModelNotInPlan``
    when the plan is below the model's minimum plan.
    """
    if user.disabled:
        raise AccountDisabled()
    if not user.plan.includes(spec.min_plan):
        raise ModelNotInPlan(
            f"Your plan ({user.plan}) does not include {spec.id}; it needs {spec.min_plan}.",
            model=spec.id,
        )
