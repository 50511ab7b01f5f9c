"""The model catalog: the shipped file, plan policy, prices, and every way a catalog is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.catalog.toml_catalog import default_catalog_path, load_catalog
from whalli.domain.model.catalog import (
    ModelCatalog,
    ModelSpec,
    check_max_tokens,
    check_reasoning,
    ensure_model_allowed,
)
from whalli.domain.model.chats import (
    CLASSIC_EFFORTS,
    GenerationParams,
    ReasoningEffort,
    TokenUsage,
    Verbosity,
)
from whalli.domain.model.errors import (
    AccountDisabled,
    InvalidCatalog,
    InvalidInput,
    ModelNotFound,
    ModelNotInPlan,
)
from whalli.domain.model.users import Plan, User

ALL_PROVIDERS = {"openai", "anthropic", "xai", "dev"}
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def a_spec(model_id: str = "dev/a", **changes: object) -> ModelSpec:
    fields: dict[str, object] = {
        "id": model_id, "provider": "dev", "upstream": model_id.split("/")[-1],
        "min_plan": Plan.FREE, "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0,
        "context_window": 1000,
    }  # fmt: skip
    fields.update(changes)
    return ModelSpec(**fields)  # type: ignore[arg-type]


def a_user(plan: Plan = Plan.FREE, *, disabled: bool = False) -> User:
    user = User.create(id=uuid.uuid4(), email="ada@example.com", now=NOW, plan=plan)
    user.disabled = disabled
    return user


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


ENTRY = """
[[model]]
id = "{id}"
provider = "dev"
upstream = "echo"
min_plan = "free"
input_usd_per_mtok = 1
output_usd_per_mtok = 2
context_window = 100
"""


# --- the shipped catalog --------------------------------------------------------------------
def test_the_shipped_catalog_loads_and_has_the_expected_models() -> None:
    catalog = load_catalog(default_catalog_path())
    for model_id in ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4", "xai/grok-3", "dev/echo"):
        assert model_id in catalog
    assert catalog.get("anthropic/claude-sonnet-4").provider == "anthropic"
    assert catalog.get("dev/echo").cost_usd(1000, 1000) == 0


def test_a_free_user_gets_a_model_of_the_shipped_catalog_from_every_provider() -> None:
    catalog = load_catalog(default_catalog_path())
    for provider in ALL_PROVIDERS:
        assert catalog.available_for(Plan.FREE, frozenset({provider}))


def test_the_shipped_catalog_says_which_claude_models_think_adaptively() -> None:
    catalog = load_catalog(default_catalog_path())

    adaptive = {spec.id for spec in catalog if spec.adaptive_thinking}

    assert adaptive == {"anthropic/claude-sonnet-4-6", "anthropic/claude-opus-4-6"}


def test_the_shipped_catalog_says_which_models_enforce_schemas() -> None:
    catalog = load_catalog(default_catalog_path())

    strict = {spec.id for spec in catalog if spec.strict_outputs}

    assert {"openai/gpt-4o-mini", "anthropic/claude-haiku-4-5", "anthropic/claude-opus-4-6"} <= (
        strict
    )
    assert not strict & {"anthropic/claude-3-5-haiku", "anthropic/claude-sonnet-4", "dev/echo"}


def test_a_fallback_chain_of_the_shipped_catalog_ends() -> None:
    catalog = load_catalog(default_catalog_path())
    chain = [s.id for s in catalog.fallbacks("anthropic/claude-opus-4")]
    assert chain == ["anthropic/claude-sonnet-4", "openai/gpt-4o", "openai/gpt-4o-mini"]
    assert catalog.fallbacks("openai/gpt-4o-mini") == []


def test_an_unknown_model_id_is_not_found() -> None:
    catalog = load_catalog(default_catalog_path())
    with pytest.raises(ModelNotFound, match="'openai/gpt-9' is not in the catalog"):
        catalog.get("openai/gpt-9")


# --- plans and the policy -------------------------------------------------------------------
def plan_catalog() -> ModelCatalog:
    return ModelCatalog([
        a_spec("dev/free", min_plan=Plan.FREE),
        a_spec("dev/pro", min_plan=Plan.PRO),
        a_spec("dev/enterprise", min_plan=Plan.ENTERPRISE),
        a_spec("openai/pro", provider="openai", min_plan=Plan.PRO),
    ])  # fmt: skip


def test_a_higher_plan_sees_every_model_of_the_plans_below_it() -> None:
    catalog = plan_catalog()
    free = {s.id for s in catalog.available_for(Plan.FREE, ALL_PROVIDERS)}
    pro = {s.id for s in catalog.available_for(Plan.PRO, ALL_PROVIDERS)}
    enterprise = {s.id for s in catalog.available_for(Plan.ENTERPRISE, ALL_PROVIDERS)}
    assert free == {"dev/free"}
    assert pro == {"dev/free", "dev/pro", "openai/pro"}
    assert enterprise == {"dev/free", "dev/pro", "dev/enterprise", "openai/pro"}


def test_models_of_providers_that_are_not_enabled_are_not_offered() -> None:
    catalog = plan_catalog()
    assert [s.id for s in catalog.available_for(Plan.PRO, {"openai"})] == ["openai/pro"]
    assert catalog.available_for(Plan.ENTERPRISE, set()) == []


@given(st.sampled_from(Plan), st.sampled_from(Plan))
def test_a_user_may_use_a_model_exactly_when_their_plan_includes_its_plan(
    user_plan: Plan, model_plan: Plan
) -> None:
    spec = a_spec(min_plan=model_plan)
    if user_plan.includes(model_plan):
        ensure_model_allowed(a_user(user_plan), spec)
    else:
        with pytest.raises(ModelNotInPlan, match="does not include dev/a"):
            ensure_model_allowed(a_user(user_plan), spec)


def test_a_free_user_is_refused_a_pro_model_with_the_plan_it_needs() -> None:
    with pytest.raises(ModelNotInPlan, match=r"Your plan \(free\) does not include .* needs pro"):
        ensure_model_allowed(a_user(Plan.FREE), a_spec(min_plan=Plan.PRO))


def test_a_disabled_user_is_refused_even_a_free_model() -> None:
    with pytest.raises(AccountDisabled, match="disabled"):
        ensure_model_allowed(a_user(Plan.ENTERPRISE, disabled=True), a_spec(min_plan=Plan.FREE))


# --- prices ---------------------------------------------------------------------------------
def test_the_cost_of_a_call_is_the_tokens_times_the_price_per_million() -> None:
    spec = a_spec(input_usd_per_mtok=3.0, output_usd_per_mtok=15.0)
    catalog = ModelCatalog([spec])
    assert catalog.cost_usd(spec, 1_000_000, 0) == pytest.approx(3.0)
    assert catalog.cost_usd(spec, 0, 1_000_000) == pytest.approx(15.0)
    assert catalog.cost_usd(spec, 2_000, 500) == pytest.approx(0.006 + 0.0075)
    assert catalog.cost_usd(spec, 0, 0) == 0


def test_negative_token_counts_have_no_cost() -> None:
    with pytest.raises(InvalidInput, match="cannot be negative"):
        a_spec().cost_usd(-1, 0)
    with pytest.raises(InvalidInput, match="cannot be negative"):
        a_spec().cost_usd(10, 0, cached=-1)


def test_claudes_cache_reads_cost_a_tenth_and_writes_a_quarter_more_than_input() -> None:
    claude = a_spec("anthropic/c", provider="anthropic", input_usd_per_mtok=3.0)
    assert (claude.cache_read_price, claude.cache_write_price) == pytest.approx((0.3, 3.75))
    usage = TokenUsage(
        prompt_tokens=10_000, completion_tokens=100, cached_prompt_tokens=6_000,
        cache_write_tokens=3_000,
    )  # fmt: skip
    expected = (1_000 * 3.0 + 6_000 * 0.3 + 3_000 * 3.75 + 100 * 2.0) / 1_000_000
    assert claude.price(usage) == pytest.approx(expected)


def test_claudes_writes_to_its_hour_long_cache_cost_twice_the_input() -> None:
    claude = a_spec("anthropic/c", provider="anthropic", input_usd_per_mtok=3.0)
    assert claude.cache_write_1h_price == pytest.approx(6.0)
    usage = TokenUsage(
        prompt_tokens=10_000, completion_tokens=0, cache_write_tokens=4_000,
        cache_write_1h_tokens=3_000,
    )  # fmt: skip
    expected = (6_000 * 3.0 + 1_000 * 3.75 + 3_000 * 6.0) / 1_000_000
    assert claude.price(usage) == pytest.approx(expected)
    # more hour-long writes than writes are taken as all of them
    assert claude.cost_usd(100, 0, written=10, written_1h=50) == pytest.approx(
        (90 * 3.0 + 10 * 6.0) / 1_000_000
    )
    listed = a_spec("anthropic/l", provider="anthropic", cache_write_1h_usd_per_mtok=7.5)
    assert listed.cache_write_1h_price == 7.5
    with pytest.raises(InvalidInput, match="cannot be negative"):
        claude.cost_usd(10, 0, written_1h=-1)


def test_other_providers_cached_input_costs_the_input_price_unless_the_catalog_says() -> None:
    usage = TokenUsage(prompt_tokens=1_000, completion_tokens=0, cached_prompt_tokens=800)
    plain = a_spec("openai/p", provider="openai", input_usd_per_mtok=2.0)
    assert plain.price(usage) == pytest.approx(1_000 * 2.0 / 1_000_000)
    listed = a_spec("openai/l", provider="openai", input_usd_per_mtok=2.0,
                    cached_input_usd_per_mtok=0.5)  # fmt: skip
    assert listed.price(usage) == pytest.approx((200 * 2.0 + 800 * 0.5) / 1_000_000)
    # a price of the catalog's wins over the provider's share too
    claude = a_spec("anthropic/c", provider="anthropic", cache_write_usd_per_mtok=9.0)
    assert claude.cache_write_price == 9.0


@given(
    prompt=st.integers(0, 10**7), cached=st.integers(0, 2 * 10**7), written=st.integers(0, 10**7)
)
def test_cached_and_written_tokens_never_cost_more_than_the_prompt_has(
    prompt: int, cached: int, written: int
) -> None:
    """Counts a provider reports beyond the prompt's are taken as all of it, reads first:
    the price stays between the prompt read wholly from the cache and wholly written."""
    claude = a_spec("anthropic/c", provider="anthropic", input_usd_per_mtok=1.0)
    cost = claude.cost_usd(prompt, 0, cached=cached, written=written)
    assert prompt * 0.1 / 1e6 * (1 - 1e-9) <= cost <= prompt * 1.25 / 1e6 * (1 + 1e-9)


def test_the_shipped_catalog_prices_openai_and_xai_cached_input_below_their_input() -> None:
    catalog = load_catalog(default_catalog_path(), providers=frozenset(ALL_PROVIDERS))
    for spec in catalog:
        if spec.provider in ("openai", "xai"):
            assert spec.cached_input_usd_per_mtok is not None, spec.id
            assert 0 < spec.cache_read_price < spec.input_usd_per_mtok, spec.id
        if spec.provider == "anthropic":
            assert spec.cache_read_price == pytest.approx(spec.input_usd_per_mtok / 10)


# --- refused catalogs -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"provider": "acme"}, r"Model 'dev/a': provider 'acme' is unknown"),
        ({"input_usd_per_mtok": -0.01}, r"Model 'dev/a': prices must be finite and not negative"),
        (
            {"cached_input_usd_per_mtok": float("nan")},
            r"Model 'dev/a': prices must be finite and not negative",
        ),
        (
            {"cache_write_usd_per_mtok": -1.0},
            r"Model 'dev/a': prices must be finite and not negative",
        ),
        ({"output_usd_per_mtok": -1.0}, r"Model 'dev/a': prices must be finite and not negative"),
        ({"output_usd_per_mtok": float("nan")}, r"Model 'dev/a': prices must be finite"),
        ({"context_window": 0}, r"Model 'dev/a': the context window must be positive"),
        ({"context_window": -5}, r"Model 'dev/a': the context window must be positive"),
        ({"upstream": " "}, r"Model 'dev/a': the upstream model name is empty"),
        ({"fallback": "dev/ghost"}, r"'dev/a' falls back to 'dev/ghost', which is not in"),
        ({"fallback": "dev/a"}, r"'dev/a' has a fallback cycle: dev/a -> dev/a"),
        ({"reasoning_efforts": ("low",)}, r"'dev/a': reasoning_efforts needs reasoning = true"),
        (
            {"reasoning": True, "reasoning_efforts": ()},
            r"'dev/a': reasoning_efforts must name at least one effort, each once",
        ),
        (
            {"reasoning": True, "reasoning_efforts": ("low", "low")},
            r"'dev/a': reasoning_efforts must name at least one effort, each once",
        ),
        ({"max_output_tokens": 0}, r"'dev/a': max_output_tokens must be positive and within"),
        ({"max_output_tokens": 1001}, r"'dev/a': max_output_tokens must be positive and within"),
        ({"strict_outputs": True}, r"'dev/a': provider 'dev' cannot enforce schemas"),
        ({"prefill": False}, r"'dev/a': prefill = false is for an anthropic model"),
        ({"adaptive_thinking": True, "reasoning": True}, r"'dev/a': adaptive_thinking needs"),
        (
            {"adaptive_thinking": True, "provider": "anthropic"},
            r"'dev/a': adaptive_thinking needs reasoning = true",
        ),
    ],
)
def test_an_invalid_model_is_refused_with_its_name(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidCatalog, match=message) as refused:
        ModelCatalog([a_spec(**changes)])
    assert isinstance(refused.value, InvalidInput)
    assert refused.value.details["model"] == "dev/a"


def test_a_fallback_cycle_through_several_models_is_refused() -> None:
    specs = [
        a_spec("dev/a", fallback="dev/b"),
        a_spec("dev/b", fallback="dev/c"),
        a_spec("dev/c", fallback="dev/a"),
    ]
    with pytest.raises(InvalidCatalog, match=r"cycle: dev/a -> dev/b -> dev/c -> dev/a"):
        ModelCatalog(specs)


def test_a_fallback_needing_a_higher_plan_than_its_model_is_refused() -> None:
    specs = [a_spec("dev/a", fallback="dev/b"), a_spec("dev/b", min_plan=Plan.PRO)]
    with pytest.raises(InvalidCatalog, match=r"'dev/a' falls back to 'dev/b', which needs a"):
        ModelCatalog(specs)


def test_a_model_listed_twice_is_refused() -> None:
    with pytest.raises(InvalidCatalog, match=r"'dev/a' is listed twice"):
        ModelCatalog([a_spec(), a_spec()])


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidCatalog, match=r"nowhere\.toml: the catalog cannot be read"):
        load_catalog(tmp_path / "nowhere.toml")


def test_a_file_that_is_not_toml_is_refused_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[[model]\nid = ")
    with pytest.raises(InvalidCatalog, match=r"models\.toml: not valid TOML \(.*line 1"):
        load_catalog(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"models\.toml: no models"),
        ("title = 'x'\n", r"models\.toml: unknown top-level keys \['title'\]"),
        ("model = 3\n", r"models\.toml: no models"),
        (
            ENTRY.format(id="dev/a") + ENTRY.format(id="dev/b").replace("= 100", "= 'big'"),
            r"models\.toml: model entry 2 \('dev/b'\): Expected `int`, got `str` - at "
            r"`\$\.context_window`",
        ),
        (
            ENTRY.format(id="dev/a").replace('upstream = "echo"\n', ""),
            r"models\.toml: model entry 1 \('dev/a'\): Object missing required field `upstream`",
        ),
        (
            ENTRY.format(id="dev/a") + "colour = 'blue'\n",
            r"models\.toml: model entry 1 \('dev/a'\): Object contains unknown field `colour`",
        ),
        (
            ENTRY.format(id="dev/a").replace('"free"', '"gold"'),
            r"models\.toml: model entry 1 \('dev/a'\): Invalid enum value 'gold'",
        ),
        (
            ENTRY.format(id="dev/a").replace('provider = "dev"', 'provider = "acme"'),
            r"models\.toml: Model 'dev/a': provider 'acme' is unknown",
        ),
        (
            ENTRY.format(id="dev/a") + "fallback = 'dev/zzz'\n",
            r"models\.toml: Model 'dev/a' falls back to 'dev/zzz', which is not in the catalog",
        ),
    ],
)
def test_a_malformed_catalog_file_is_refused_naming_the_file_and_the_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(InvalidCatalog, match=message):
        load_catalog(write(tmp_path, text))


def test_a_valid_catalog_file_keeps_the_order_of_its_entries(tmp_path: Path) -> None:
    text = ENTRY.format(id="dev/b") + ENTRY.format(id="dev/a") + "fallback = 'dev/b'\n"
    catalog = load_catalog(write(tmp_path, text))
    assert [s.id for s in catalog] == ["dev/b", "dev/a"]
    assert catalog.get("dev/a") == ModelSpec(
        id="dev/a", provider="dev", upstream="echo", min_plan=Plan.FREE,
        input_usd_per_mtok=1.0, output_usd_per_mtok=2.0, context_window=100, fallback="dev/b",
    )  # fmt: skip


def test_only_a_model_of_a_provider_that_asks_for_reasoning_may_take_an_effort() -> None:
    with pytest.raises(InvalidCatalog, match="cannot ask for reasoning"):
        ModelCatalog(
            [a_spec("new/a", provider="new", reasoning=True)], providers=frozenset({"new"})
        )
    ModelCatalog([a_spec("anthropic/a", provider="anthropic", reasoning=True)])
    ModelCatalog([a_spec("dev/a", reasoning=True)])
    reasoner = a_spec("openai/o", provider="openai", reasoning=True)
    plain = a_spec("openai/p", provider="openai")
    ModelCatalog([reasoner, plain])
    check_reasoning(reasoner, ReasoningEffort.HIGH)
    check_reasoning(plain, None)
    with pytest.raises(InvalidInput, match="does not take a reasoning effort") as refused:
        check_reasoning(plain, ReasoningEffort.LOW, field="params.reasoningEffort")
    assert refused.value.details["field"] == "params.reasoningEffort"


def test_a_model_taking_some_efforts_refuses_the_others_naming_those_it_takes() -> None:
    grok = a_spec(
        "xai/m", provider="xai", reasoning=True,
        reasoning_efforts=(ReasoningEffort.LOW, ReasoningEffort.HIGH),
    )  # fmt: skip
    every = a_spec("openai/r", provider="openai", reasoning=True)
    ModelCatalog([grok, every])
    assert every.efforts == CLASSIC_EFFORTS
    assert grok.efforts == (ReasoningEffort.LOW, ReasoningEffort.HIGH)
    assert (grok.takes_effort(None), grok.takes_effort(ReasoningEffort.HIGH)) == (True, True)
    assert not grok.takes_effort(ReasoningEffort.MEDIUM)
    assert a_spec("openai/p", provider="openai").efforts == ()
    check_reasoning(grok, ReasoningEffort.LOW)
    with pytest.raises(InvalidInput, match="takes a reasoning effort of low or high, not medium"):
        check_reasoning(grok, ReasoningEffort.MEDIUM, field="reasoning_effort")


def test_a_max_tokens_above_the_models_output_cap_is_refused_naming_it() -> None:
    capped = a_spec(max_output_tokens=500)
    check_max_tokens(capped, None)
    check_max_tokens(capped, 500)
    check_max_tokens(a_spec(), 10**6)  # no cap known
    with pytest.raises(InvalidInput, match="writes at most 500 tokens") as refused:
        check_max_tokens(capped, 501, field="max_tokens")
    assert (refused.value.details["field"], refused.value.details["model"]) == (
        "max_tokens",
        "dev/a",
    )


def test_the_shipped_catalog_has_reasoning_models() -> None:
    catalog = load_catalog(default_catalog_path())
    assert {m.id for m in catalog if m.reasoning} == {
        "openai/o4-mini",
        "openai/gpt-5-mini",
        "openai/gpt-5",
        "openai/gpt-5.1",
        "openai/gpt-5.2",
        "xai/grok-3-mini",
        "anthropic/claude-sonnet-4",
        "anthropic/claude-opus-4",
        "anthropic/claude-haiku-4-5",
        "anthropic/claude-sonnet-4-6",
        "anthropic/claude-opus-4-6",
        "dev/echo",
    }


def test_a_fallback_is_asked_what_it_takes_of_what_its_model_was_asked() -> None:
    grok = a_spec(
        "xai/m", provider="xai", reasoning=True, max_output_tokens=500,
        reasoning_efforts=(ReasoningEffort.LOW, ReasoningEffort.HIGH),
    )  # fmt: skip
    asked = GenerationParams(reasoning_effort=ReasoningEffort.HIGH, max_tokens=400, seed=7)
    assert grok.fitted(asked) is asked  # nothing to change: the same object
    medium = GenerationParams(reasoning_effort=ReasoningEffort.MEDIUM, max_tokens=900, seed=7)
    # medium is as near to low as to high: the greater is asked
    high = GenerationParams(reasoning_effort=ReasoningEffort.HIGH, max_tokens=500, seed=7)
    assert grok.fitted(medium) == high
    plain = a_spec("openai/p", provider="openai")  # takes no effort: asked none
    assert plain.fitted(medium) == GenerationParams(max_tokens=900, seed=7)


@pytest.mark.parametrize(
    ("takes", "asked", "nearest"),
    [
        (("none", "low", "medium", "high", "xhigh"), "minimal", "low"),  # none as near: greater
        (("none", "low", "medium", "high"), "xhigh", "high"),
        (("minimal", "low", "medium", "high"), "none", "minimal"),
        (("low", "medium", "high"), "none", "low"),
        (("none", "high"), "minimal", "none"),
        (("low", "high"), "low", "low"),
    ],
)
def test_a_fallback_is_asked_the_nearest_effort_it_takes(
    takes: tuple[str, ...], asked: str, nearest: str
) -> None:
    spec = a_spec(
        "openai/f", provider="openai", reasoning=True,
        reasoning_efforts=tuple(ReasoningEffort(e) for e in takes),
    )  # fmt: skip
    ModelCatalog([spec])
    fitted = spec.fitted(GenerationParams(reasoning_effort=ReasoningEffort(asked)))
    assert fitted.reasoning_effort is ReasoningEffort(nearest)
    assert spec.nearest_effort(None) is None


def test_refused_sampling_parameters_are_named_among_the_known_ones_each_once() -> None:
    with pytest.raises(InvalidCatalog, match="refuses names logit_bias, not sampling"):
        ModelCatalog([a_spec("openai/r", provider="openai", refuses=("logit_bias",))])
    with pytest.raises(InvalidCatalog, match="refuses names a parameter twice"):
        ModelCatalog([a_spec("openai/r", provider="openai", refuses=("stop", "stop"))])
    with pytest.raises(InvalidCatalog, match="top_p in both refuses and refuses_while"):
        ModelCatalog([
            a_spec(
                "openai/r", provider="openai", reasoning=True, refuses=("top_p",),
                reasoning_efforts=(ReasoningEffort.NONE, ReasoningEffort.HIGH),
                refuses_while_reasoning=("top_p",),
            )
        ])  # fmt: skip
    # only a model that reasons by default at none (it takes none) refuses "while reasoning"
    with pytest.raises(InvalidCatalog, match="needs a reasoning model that takes none"):
        ModelCatalog([
            a_spec("openai/r", provider="openai", reasoning=True,
                   refuses_while_reasoning=("temperature",))
        ])  # fmt: skip


def test_a_claude_model_takes_only_the_classic_efforts() -> None:
    with pytest.raises(InvalidCatalog, match="takes only minimal, low, medium and high"):
        ModelCatalog([
            a_spec("anthropic/c", provider="anthropic", reasoning=True,
                   reasoning_efforts=(ReasoningEffort.HIGH, ReasoningEffort.XHIGH))
        ])  # fmt: skip


def test_what_a_model_refuses_is_not_sent_and_a_refused_stop_is_applied_here() -> None:
    spec = a_spec(
        "openai/g", provider="openai", reasoning=True, refuses=("stop", "seed"),
        reasoning_efforts=(ReasoningEffort.NONE, ReasoningEffort.HIGH),
        refuses_while_reasoning=("temperature",),
    )  # fmt: skip
    ModelCatalog([spec])
    asked = GenerationParams(temperature=0.3, stop=("END", "\n\n"), seed=4, max_tokens=9)
    sent, local = spec.sent(asked)
    assert sent == GenerationParams(temperature=0.3, max_tokens=9)  # at its default (none)
    assert local == ("END", "\n\n")
    reasoning = msgspec.structs.replace(asked, reasoning_effort=ReasoningEffort.HIGH)
    sent, local = spec.sent(reasoning)
    assert sent == GenerationParams(max_tokens=9, reasoning_effort=ReasoningEffort.HIGH)
    at_none = msgspec.structs.replace(asked, reasoning_effort=ReasoningEffort.NONE, stop=None)
    sent, local = spec.sent(at_none)
    assert (sent.temperature, sent.seed, local) == (0.3, None, ())
    plain = GenerationParams(temperature=0.3, max_tokens=9)
    assert a_spec().sent(plain) == (plain, ())
    untouched = GenerationParams(max_tokens=9)
    assert spec.sent(untouched)[0] is untouched  # nothing it refuses asked: the same object


def test_a_verbosity_goes_only_to_a_model_that_takes_it() -> None:
    takes = a_spec("openai/v", provider="openai", verbosity=True)
    other = a_spec("openai/o", provider="openai")
    ModelCatalog([takes, other])
    asked = GenerationParams(verbosity=Verbosity.LOW, temperature=0.5)
    assert takes.sent(asked) == (asked, ())
    assert other.sent(asked) == (GenerationParams(temperature=0.5), ())
    with pytest.raises(InvalidCatalog, match="cannot ask for a verbosity"):
        ModelCatalog([a_spec("anthropic/c", provider="anthropic", verbosity=True)])
