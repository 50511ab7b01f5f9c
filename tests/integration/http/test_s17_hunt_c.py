"""Hunt of Claude's adaptive thinking and of the one place a catalog model's request is built
(``completion_request``), end to end through the real app (Postgres, Redis) with Anthropic and
OpenAI on loopback speaking their wire protocol: what Whalli sends the catalog's newer Claude
models (Haiku 4.5: strict outputs, a thinking budget; Sonnet and Opus 4.6: strict outputs and
adaptive thinking) through /v1 and through the chat flow, and how their answers come back."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.http.test_chat_flow import _app
from tests.integration.http.test_chat_regenerate import messages
from tests.integration.http.test_new_features_hunt import _plan
from tests.integration.http.test_s17_hunt import SCHEMA, STRICT_FORMAT, anthropic_documented
from tests.integration.http.test_v1_tools import Providers, providers
from tests.support.access import changed
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    ScriptedCall,
    anthropic_error,
    anthropic_stream,
    anthropic_tool_stream,
    openai_default,
)
from tests.support.fake_reasoning import THOUGHTS, anthropic_thinking_stream
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.chat_titles import INSTRUCTION
from whalli.domain.model.chats import title_from
from whalli.domain.model.errors import ProviderError
from whalli.domain.model.jobs import TitleChat
from whalli.domain.model.users import Plan

__all__ = ["providers"]

HAIKU, SONNET, OPUS = (
    "anthropic/claude-haiku-4-5",
    "anthropic/claude-sonnet-4-6",
    "anthropic/claude-opus-4-6",
)
TOOLS: Any = [{"type": "function", "function": {"name": "lookup", "parameters": SCHEMA}}]


def asked(text: str = "Hello.") -> list[ChatCompletionMessageParam]:
    # unique: the shared Redis may hold the cached replies of other runs
    return [{"role": "user", "content": f"{text} {uuid.uuid4()}"}]


async def _v1_plan(providers: Providers, plan: Plan) -> None:
    uow = await resolved(providers.container.adapters.unit_of_work())
    async with uow:
        user = await uow.users.get(providers.user_id)
        user.plan = plan
        await uow.users.update(user)
        await uow.commit()
    await changed(providers.container, providers.user_id)


def _failing(*upstreams: str) -> Callable[[RecordedRequest], Reply]:
    """The documented loopback Anthropic, overloaded for the ``upstreams`` models."""
    documented = anthropic_documented()

    def reply(request: RecordedRequest) -> Reply:
        if request.body.get("model") in upstreams:
            return Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded"))
        return documented(request)

    return reply


def _last_for(providers: Providers, upstream: str) -> dict[str, Any]:
    return [r.body for r in providers.anthropic.requests if r.body["model"] == upstream][-1]


# --- /v1: how an answer cut by the context window finishes ---------------------------------------
@pytest.mark.parametrize("stream", [False, True])
async def test_a_claude_answer_cut_by_the_context_window_finishes_with_length_on_v1(
    providers: Providers, stream: bool
) -> None:
    """Claude Sonnet 4.5 and later take a max_tokens beyond what the context window leaves and
    stop there with ``model_context_window_exceeded``: the answer is cut, as by max_tokens."""
    cut = anthropic_stream(["Once upon", " a time"], stop_reason="model_context_window_exceeded")
    providers.anthropic.script(Reply(chunks=cut))
    sdk = providers.sdk.chat.completions
    if stream:
        reasons = []
        async for chunk in await sdk.create(model=HAIKU, messages=asked(), stream=True):
            reasons += [c.finish_reason for c in chunk.choices if c.finish_reason]
        [reason] = reasons
    else:
        completion = await sdk.create(model=HAIKU, messages=asked())
        reason = completion.choices[0].finish_reason

    assert reason == "length"


# --- /v1: adaptive thinking in a tool loop --------------------------------------------------------
def _tool_turn() -> list[Any]:
    return [
        *asked("Look it up."),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"greeting": "x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "found"},
    ]


async def test_an_adaptive_claudes_first_tool_turn_thinks_at_the_effort_asked(
    providers: Providers,
) -> None:
    await _v1_plan(providers, Plan.PRO)
    providers.anthropic._default = anthropic_documented()
    call = ScriptedCall("toolu_1", "lookup", ['{"greeting": "x"}'])
    providers.anthropic.script(Reply(chunks=anthropic_tool_stream([call])))

    completion = await providers.sdk.chat.completions.create(
        model=SONNET, messages=asked("Look it up."), tools=TOOLS, reasoning_effort="low",
        temperature=0.3, top_p=0.9,
    )  # fmt: skip

    assert completion.choices[0].finish_reason == "tool_calls"
    sent = providers.anthropic.requests[-1].body
    assert (sent["thinking"], sent["output_config"]) == ({"type": "adaptive"}, {"effort": "low"})
    assert not {"temperature", "top_p", "tool_choice"} & sent.keys()
    assert sent["max_tokens"] == 8192 + 2048  # Claude's default answer room and low's budget


async def test_an_adaptive_claudes_tool_loop_step_keeps_the_effort_asked(
    providers: Providers,
) -> None:
    """Without its signed thinking the step cannot think, but Anthropic's effort also governs
    the text and tool calls, with or without thinking: a caller asking low keeps paying low."""
    await _v1_plan(providers, Plan.PRO)
    providers.anthropic._default = anthropic_documented()

    completion = await providers.sdk.chat.completions.create(
        model=SONNET, messages=_tool_turn(), tools=TOOLS, reasoning_effort="low"
    )

    assert completion.choices[0].finish_reason == "stop"
    sent = providers.anthropic.requests[-1].body
    assert "thinking" not in sent
    assert sent.get("output_config") == {"effort": "low"}


async def test_an_adaptive_claudes_tool_loop_step_with_a_strict_format_keeps_the_format(
    providers: Providers,
) -> None:
    await _v1_plan(providers, Plan.ENTERPRISE)
    providers.anthropic._default = anthropic_documented()

    completion = await providers.sdk.chat.completions.create(
        model=OPUS, messages=_tool_turn(), tools=TOOLS, reasoning_effort="high",
        response_format=STRICT_FORMAT, temperature=0.2,
    )  # fmt: skip

    assert completion.choices[0].finish_reason == "stop"
    sent = providers.anthropic.requests[-1].body
    assert "thinking" not in sent
    assert sent["output_config"]["format"] == {"type": "json_schema", "schema": SCHEMA}
    assert sent["temperature"] == 0.2  # no thinking: the sampler the caller set goes


# --- /v1: a fallback from an adaptive Claude to one with a budget, then to OpenAI -----------------
async def test_an_opus_46_request_falls_back_adaptively_then_with_a_budget_within_each_cap(
    providers: Providers,
) -> None:
    await _v1_plan(providers, Plan.ENTERPRISE)
    providers.anthropic._default = _failing("claude-opus-4-6", "claude-sonnet-4-6")

    completion = await providers.sdk.chat.completions.create(
        model=OPUS, messages=asked(), reasoning_effort="high", max_tokens=100_000,
        response_format=STRICT_FORMAT,
    )  # fmt: skip

    assert completion.choices[0].finish_reason == "stop"
    opus = _last_for(providers, "claude-opus-4-6")
    sonnet = _last_for(providers, "claude-sonnet-4-6")
    haiku = _last_for(providers, "claude-haiku-4-5")
    fmt = {"type": "json_schema", "schema": SCHEMA}
    assert (opus["thinking"], opus["output_config"]) == (
        {"type": "adaptive"},
        {"format": fmt, "effort": "high"},
    )
    assert opus["max_tokens"] == 100_000 + 24_576  # the answer's room and high's
    assert (sonnet["thinking"], sonnet["max_tokens"]) == ({"type": "adaptive"}, 64_000)
    assert sonnet["output_config"] == {"format": fmt, "effort": "high"}
    # Haiku 4.5 takes no effort and no adaptive thinking: a budget, within its cap
    assert haiku["thinking"] == {"type": "enabled", "budget_tokens": 24_576}
    assert haiku["max_tokens"] == 64_000
    assert haiku["output_config"] == {"format": fmt}


async def test_an_effort_asked_of_claude_skips_the_openai_fallback_that_takes_none(
    providers: Providers,
) -> None:
    await _v1_plan(providers, Plan.PRO)
    providers.anthropic._default = _failing(
        "claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-6"
    )

    with pytest.raises(openai.APIStatusError, match=r"(?i)overload|unavailable|provider") as e:
        await providers.sdk.chat.completions.create(
            model=SONNET, messages=asked(), reasoning_effort="medium"
        )

    assert e.value.status_code >= 500
    tried = [r.body["model"] for r in providers.anthropic.requests]
    assert {"claude-sonnet-4-6", "claude-haiku-4-5"} <= set(tried)
    assert providers.openai.requests == []


# --- the model lists ------------------------------------------------------------------------------
async def test_v1_models_lists_the_new_claude_models_by_plan(providers: Providers) -> None:
    free = {m.id for m in (await providers.sdk.models.list()).data}
    await _v1_plan(providers, Plan.PRO)
    pro = {m.id for m in (await providers.sdk.models.list()).data}
    await _v1_plan(providers, Plan.ENTERPRISE)
    enterprise = {m.id for m in (await providers.sdk.models.list()).data}

    new = {HAIKU, SONNET, OPUS}
    assert (free & new, pro & new, enterprise & new) == ({HAIKU}, {HAIKU, SONNET}, new)


async def test_api_models_describes_the_new_claude_models(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(anthropic_documented()) as anthropic,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
        ) as chat,
    ):  # fmt: skip
        alice = await chat.world.register("alice")
        free = (await chat.client.get("/api/models", headers=alice["auth"])).json()
        await _plan(chat, alice, "enterprise")
        everything = (await chat.client.get("/api/models", headers=alice["auth"])).json()

    assert {m["id"] for m in free} & {HAIKU, SONNET, OPUS} == {HAIKU}
    listed = {m["id"]: m for m in everything}
    for model, cap in ((HAIKU, 64_000), (SONNET, 64_000), (OPUS, 128_000)):
        capabilities = listed[model]["capabilities"]
        assert capabilities["reasoning"] is True, model
        assert capabilities["strictOutputs"] is True, model
        assert capabilities["tools"] is True, model
        assert capabilities["structuredOutputs"] is True, model
        assert capabilities["vision"] is True, model
        assert set(capabilities["reasoningEfforts"]) == {"minimal", "low", "medium", "high"}
        assert listed[model]["maxOutputTokens"] == cap, model


# --- the chat flow: start, regenerate, preset, title ----------------------------------------------
async def test_a_chat_with_opus_46_thinks_adaptively_through_start_regenerate_and_preset(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(anthropic_documented()) as anthropic,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
        ) as chat,
    ):  # fmt: skip
        alice = await chat.world.register("alice")
        await _plan(chat, alice, "enterprise")
        anthropic.script(Reply(chunks=anthropic_thinking_stream()))
        started = await chat.start(
            alice["auth"], model=OPUS, message=f"Think {uuid.uuid4()}",
            params={"reasoningEffort": "high", "temperature": 0.3, "topP": 0.9,
                    "maxTokens": 120_000},
        )  # fmt: skip
        events = await chat.events(started["sessionId"])
        assert events[-1][1] == "done", events[-1]
        assert "".join(e[2]["delta"] for e in events if e[1] == "reasoning") == "".join(THOUGHTS)
        first = anthropic.requests[-1].body

        regenerated = await chat.client.post(
            "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=alice["auth"]
        )
        assert regenerated.status_code == 201, regenerated.text
        assert (await chat.events(regenerated.json()["sessionId"]))[-1][1] == "done"
        again = anthropic.requests[-1].body

        preset = await chat.client.post(
            "/api/presets", headers=alice["auth"],
            json={"name": "Quick", "model": SONNET, "params": {"reasoningEffort": "minimal"}},
        )  # fmt: skip
        assert preset.status_code == 201, preset.text
        by_preset = await chat.start(
            alice["auth"], presetId=preset.json()["id"], message=f"Quick {uuid.uuid4()}"
        )
        assert (await chat.events(by_preset["sessionId"]))[-1][1] == "done"
        quick = anthropic.requests[-1].body

    for sent in (first, again):
        assert sent["model"] == "claude-opus-4-6"
        assert (sent["thinking"], sent["output_config"]) == (
            {"type": "adaptive"},
            {"effort": "high"},
        )
        assert not {"temperature", "top_p"} & sent.keys()
        assert sent["max_tokens"] == 128_000  # 120,000 + high's room, within the cap
    assert quick["model"] == "claude-sonnet-4-6"
    assert (quick["thinking"], quick["output_config"]) == ({"type": "adaptive"}, {"effort": "low"})
    assert quick["max_tokens"] == 8192 + 2048  # minimal is asked as low: low's room


async def test_a_chat_on_sonnet_46_falling_back_to_haiku_45_thinks_with_a_budget(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(_failing("claude-sonnet-4-6")) as anthropic,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
        ) as chat,
    ):  # fmt: skip
        alice = await chat.world.register("alice")
        await _plan(chat, alice, "pro")
        started = await chat.start(
            alice["auth"], model=SONNET, message=f"Think {uuid.uuid4()}",
            params={"reasoningEffort": "medium", "topP": 0.5},
        )  # fmt: skip
        assert (await chat.events(started["sessionId"]))[-1][1] == "done"
        reply = (await messages(chat, started["chatId"], alice["auth"]))[-1]

    haiku = anthropic.requests[-1].body
    assert haiku["model"] == "claude-haiku-4-5"
    assert haiku["thinking"] == {"type": "enabled", "budget_tokens": 8_192}
    assert "output_config" not in haiku  # Haiku 4.5 takes no effort
    assert "top_p" not in haiku
    assert haiku["max_tokens"] == 8_192 + 8_192
    assert (reply["model"], reply["reasoning"]) == (HAIKU, None)  # (no thinking streamed)


async def test_an_adaptive_claudes_chat_title_is_asked_without_thinking_or_a_sampler_pair(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(anthropic_documented()) as anthropic,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic.url, WHALLI_QUEUE_NAME=f"hunt-c-{unique}",
        ) as chat,
    ):  # fmt: skip
        alice = await chat.world.register("alice")
        await _plan(chat, alice, "enterprise")
        message = f"Explain sourdough starters {uuid.uuid4()}"
        started = await chat.start(
            alice["auth"], model=OPUS, message=message, params={"reasoningEffort": "low"}
        )
        assert (await chat.events(started["sessionId"]))[-1][1] == "done"
        handler = await resolved(chat.world.container.services.title_chat())
        with contextlib.suppress(ProviderError):
            await handler.execute(
                TitleChat(chat_id=uuid.UUID(started["chatId"]), expected_title=title_from(message))
            )
        shown = await chat.client.get(f"/api/chats/{started['chatId']}", headers=alice["auth"])

    titled = [r.body for r in anthropic.requests if INSTRUCTION in json.dumps(r.body)]
    assert titled
    sent = titled[-1]
    assert sent["model"] == "claude-opus-4-6"
    assert not {"thinking", "output_config", "top_p"} & sent.keys()
    assert sent["max_tokens"] == 2_048
    assert shown.json()["title"] == "Hello, world!"


# --- /v1: a conversation ending with the assistant's turn ----------------------------------------
# What the Messages API answers a conversation ending with an assistant turn (a prefill): Claude
# 4.6 takes none ("Prefilling assistant messages returns a 400 error on Claude 4.6 models"), and
# no Claude takes one with thinking on (the final assistant turn must start with its thinking).
NO_PREFILL = {"claude-sonnet-4-6", "claude-opus-4-6"}
PREFILL_REFUSED = (
    "This model does not support assistant message prefill. The conversation must end with a "
    "user message."
)
PREFILL_WITH_THINKING = (
    "Expected `thinking` or `redacted_thinking`, but found `text`. When `thinking` is enabled, "
    "a final `assistant` message must start with a thinking block."
)


def _prefill_refused(request: RecordedRequest) -> Reply:
    body = request.body
    last = (body.get("messages") or [{}])[-1]
    problem = None
    if last.get("role") == "assistant":
        if body.get("model") in NO_PREFILL:
            problem = PREFILL_REFUSED
        elif "thinking" in body:
            problem = PREFILL_WITH_THINKING
    if problem is not None:
        return Reply(status=400, body=anthropic_error("invalid_request_error", problem))
    return anthropic_documented()(request)


@pytest.mark.parametrize(
    ("model", "extra"),
    [(OPUS, {}), (SONNET, {"reasoning_effort": "low"}), (HAIKU, {"reasoning_effort": "low"})],
)
async def test_a_v1_conversation_ending_with_the_assistants_turn_is_not_sent_as_a_refused_prefill(
    providers: Providers, model: str, extra: dict[str, Any]
) -> None:
    """OpenAI answers such a conversation (the assistant turn is context); Whalli knows from
    the catalog which Claude refuses it as sent."""
    await _v1_plan(providers, Plan.ENTERPRISE)
    providers.anthropic._default = _prefill_refused
    messages: Any = [*asked("Name a colour."), {"role": "assistant", "content": "Blue"}]

    problem = None
    try:
        await providers.sdk.chat.completions.create(model=model, messages=messages, **extra)
    except openai.BadRequestError as e:  # refused by Whalli, naming the messages
        problem = None if "messages" in str(e.body) else f"400 not on messages: {e.body}"
    except openai.APIStatusError as e:
        problem = f"{e.status_code}: {e.message}"

    assert problem is None

    refused = [r for r in providers.anthropic.requests if _prefill_refused(r).status == 400]
    assert refused == []
