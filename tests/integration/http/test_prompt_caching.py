"""Providers' prompt caches, through the real app and container (Postgres, Redis): Claude is
asked to cache each conversation's prompt (``cache_control`` breakpoints), a loopback Anthropic
whose cache works as the real one's (``tests.support.fake_prompt_cache``) reads the earlier
turns from it, and every reply is charged what the provider bills: cache reads and writes at
their own prices (Anthropic's a tenth and 1.25 times the input price; OpenAI's cached input at
the catalog's price), on chats, on /v1 and in ``/api/usage``."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.integration.http.test_chat_flow import Chat, _app, _reply
from tests.integration.http.test_new_features_hunt import _plan
from tests.integration.http.test_s17_hunt_c import _v1_plan
from tests.integration.http.test_v1_tools import Providers, providers
from tests.support.fake_prompt_cache import CacheUsage, PromptCacheAnthropic
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    Reply,
    openai_default,
    openai_stream,
    sse,
)
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.users import Plan

__all__ = ["providers"]  # the fixture, shared with the tool tests

CLAUDE = "anthropic/claude-sonnet-4"  # $3 in, $15 out per 1M tokens
# long enough to be cached (over the fake's 1,024 tokens), and unique to each test
INSTRUCTIONS = "You answer questions about the history of astronomy, briefly. " * 80


def billed(usage: CacheUsage, output_tokens: int) -> float:
    """What Anthropic bills Claude Sonnet 4 for a call, in USD: input $3, cache writes $3.75,
    cache reads $0.30 and output $15 per 1M tokens."""
    return (
        usage.input_tokens * 3.00
        + usage.cache_creation_input_tokens * 3.75
        + usage.cache_read_input_tokens * 0.30
        + output_tokens * 15.00
    ) / 1_000_000


def breakpoints(body: dict[str, Any]) -> list[str]:
    """Where a request body marks ``cache_control``: ``system`` and ``messages[n]``."""
    found = []
    system = body.get("system")
    if isinstance(system, list):
        found += ["system" for block in system if "cache_control" in block]
    for n, turn in enumerate(body["messages"]):
        content = turn["content"]
        if isinstance(content, list):
            found += [f"messages[{n}]" for block in content if "cache_control" in block]
    return found


@asynccontextmanager
async def _claude(
    stack_urls: StackUrls, unique: str, **env: str
) -> AsyncIterator[tuple[Chat, FakeProviderServer, PromptCacheAnthropic, dict[str, str]]]:
    cache = PromptCacheAnthropic()
    async with (
        FakeProviderServer(openai_default()) as openai_fake,
        FakeProviderServer(cache) as anthropic,
        _app(
            stack_urls, unique, openai_fake,
            WHALLI_ANTHROPIC_API_KEY=API_KEY, WHALLI_ANTHROPIC_BASE_URL=anthropic.url, **env,
        ) as chat,
    ):  # fmt: skip
        alice = await chat.world.register("alice")
        await _plan(chat, alice, "pro")
        yield chat, anthropic, cache, alice["auth"]


async def _turn(chat: Chat, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    started = await chat.start(auth, model=CLAUDE, cache=False, **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events[-1]
    done: dict[str, Any] = events[-1][2]
    return {**started, **done}


async def test_a_conversations_earlier_turns_are_read_from_claudes_cache_and_charged_as_such(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _claude(stack_urls, unique) as (chat, anthropic, cache, auth):
        system = f"{INSTRUCTIONS}{uuid.uuid4()}"
        first = await _turn(chat, auth, message="Who was Tycho Brahe?", systemPrompt=system)
        second = await _turn(chat, auth, message="And Kepler?", chatId=first["chatId"])
        third = await _turn(chat, auth, message="And Galileo?", chatId=first["chatId"])
        reply = await _reply(chat, first["chatId"])

    # each request marks the system prompt, where the previous request's prompt ended and
    # its last turn, which the API accepted
    assert [breakpoints(r.body) for r in anthropic.requests] == [
        ["system", "messages[0]"],
        ["system", "messages[0]", "messages[2]"],
        ["system", "messages[2]", "messages[4]"],
    ]
    writing, reading, again = cache.usages
    # the first turn wrote its whole prompt; each later one read the turns before it
    assert (writing.cache_read_input_tokens, writing.input_tokens) == (0, 0)
    assert writing.cache_creation_input_tokens > 1024
    assert reading.cache_read_input_tokens == writing.prompt_tokens
    assert again.cache_read_input_tokens == reading.prompt_tokens
    # charged what Anthropic bills (the fake answers 4 output tokens): reads a tenth, writes
    # 1.25 times the input price
    for done, usage in ((first, writing), (second, reading), (third, again)):
        assert done["usage"]["promptTokens"] == usage.prompt_tokens
        # the done event tells what of the prompt came from and went to the cache
        assert done["usage"]["cachedPromptTokens"] == usage.cache_read_input_tokens
        assert done["usage"]["cacheWriteTokens"] == usage.cache_creation_input_tokens
        assert done["costUsd"] == pytest.approx(billed(usage, 4), rel=1e-9)
    assert float(reply.cost_usd) == pytest.approx(billed(again, 4), rel=1e-9)
    uncached = (again.prompt_tokens * 3.00 + 4 * 15.00) / 1_000_000
    assert third["costUsd"] < uncached / 2  # most of the prompt came from the cache


async def test_claude_is_not_asked_to_cache_when_the_setting_is_off(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _claude(stack_urls, unique, WHALLI_ANTHROPIC_PROMPT_CACHE="false") as (
        chat, anthropic, cache, auth,
    ):  # fmt: skip
        system = f"{INSTRUCTIONS}{uuid.uuid4()}"
        first = await _turn(chat, auth, message="Who was Tycho Brahe?", systemPrompt=system)
        second = await _turn(chat, auth, message="And Kepler?", chatId=first["chatId"])

    assert [breakpoints(r.body) for r in anthropic.requests] == [[], []]
    assert all(
        u.cache_read_input_tokens == u.cache_creation_input_tokens == 0 for u in cache.usages
    )
    assert second["costUsd"] == pytest.approx(billed(cache.usages[1], 4), rel=1e-9)


async def test_with_the_hour_long_cache_every_mark_asks_for_it_and_its_writes_cost_double(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """``WHALLI_ANTHROPIC_PROMPT_CACHE_TTL=1h``: each breakpoint asks for Claude's 1-hour
    cache (which the API takes), and what it writes there is billed at twice the input price
    ($6 per 1M for Claude Sonnet 4), reads still a tenth."""
    async with _claude(stack_urls, unique, WHALLI_ANTHROPIC_PROMPT_CACHE_TTL="1h") as (
        chat, anthropic, cache, auth,
    ):  # fmt: skip
        system = f"{INSTRUCTIONS}{uuid.uuid4()}"
        first = await _turn(chat, auth, message="Who was Tycho Brahe?", systemPrompt=system)
        second = await _turn(chat, auth, message="And Kepler?", chatId=first["chatId"])

    marks = [
        block["cache_control"]
        for body in (r.body for r in anthropic.requests)
        for block in [*body["system"], *(b for t in body["messages"] for b in t["content"])]
        if "cache_control" in block
    ]
    assert marks == [{"type": "ephemeral", "ttl": "1h"}] * 5
    writing, reading = cache.usages
    assert writing.cache_creation_1h_input_tokens == writing.cache_creation_input_tokens > 1024
    assert reading.cache_read_input_tokens == writing.prompt_tokens
    for done, usage in ((first, writing), (second, reading)):
        hour_writes = usage.cache_creation_1h_input_tokens
        expected = billed(usage, 4) + hour_writes * (6.00 - 3.75) / 1_000_000
        assert done["costUsd"] == pytest.approx(expected, rel=1e-9)
        assert done["usage"]["cacheWriteTokens"] == usage.cache_creation_input_tokens


async def test_a_short_conversation_is_not_cached_and_costs_what_it_did(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Under the shortest prefix the API caches, the breakpoints cost nothing more."""
    async with _claude(stack_urls, unique) as (chat, anthropic, cache, auth):
        first = await _turn(chat, auth, message=f"Who was Tycho Brahe? {uuid.uuid4()}")
        second = await _turn(chat, auth, message="And Kepler?", chatId=first["chatId"])

    assert [breakpoints(r.body) for r in anthropic.requests] == [
        ["messages[0]"],
        ["messages[0]", "messages[2]"],
    ]
    for done, usage in ((first, cache.usages[0]), (second, cache.usages[1])):
        assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0
        assert done["costUsd"] == pytest.approx((usage.input_tokens * 3.00 + 60) / 1e6, rel=1e-9)


async def test_v1_reports_claudes_cache_reads_and_usage_charges_them(
    providers: Providers,
) -> None:
    await _v1_plan(providers, Plan.PRO)
    cache = PromptCacheAnthropic()
    providers.anthropic._default = cache
    system = f"{INSTRUCTIONS}{uuid.uuid4()}"
    messages: list[Any] = [{"role": "system", "content": system}]
    cached_tokens = []
    for question in ("Who was Tycho Brahe?", "And Kepler?"):
        messages.append({"role": "user", "content": question})
        completion = await providers.sdk.chat.completions.create(model=CLAUDE, messages=messages)
        assert completion.usage is not None
        assert completion.usage.prompt_tokens == cache.usages[-1].prompt_tokens
        assert completion.usage.prompt_tokens_details is not None
        cached_tokens.append(completion.usage.prompt_tokens_details.cached_tokens)
        messages.append({"role": "assistant", "content": completion.choices[0].message.content})

    assert cached_tokens == [0, cache.usages[1].cache_read_input_tokens]
    assert cached_tokens[1] > 1024
    base = str(providers.sdk.base_url).removesuffix("/v1/")
    headers = {"Authorization": f"Bearer {providers.sdk.api_key}"}
    async with httpx.AsyncClient(base_url=base) as client:
        summary = (await client.get("/api/usage", headers=headers)).json()
    by_model = {m["model"]: m for m in summary["byModel"]}
    expected = sum(billed(usage, 4) for usage in cache.usages)
    assert by_model[CLAUDE]["costUsd"] == pytest.approx(expected, abs=1e-6)  # (rounded)


async def test_openais_cached_input_is_charged_at_the_catalogs_price(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """OpenAI caches long prompts by itself and says how much it read
    (``prompt_tokens_details.cached_tokens``): gpt-4o-mini's are $0.075 per 1M, not $0.15."""
    pieces = openai_stream(usage=None, done=False)
    usage = {
        "prompt_tokens": 3000,
        "completion_tokens": 4,
        "total_tokens": 3004,
        "prompt_tokens_details": {"cached_tokens": 2048, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    chunk = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0,
             "model": "gpt-4o-mini", "choices": [], "usage": usage}  # fmt: skip
    pieces += [sse(chunk), sse("[DONE]")]
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider) as chat,
    ):
        provider.script(Reply(chunks=pieces))
        alice = await chat.world.register("alice")
        started = await chat.start(
            alice["auth"], model="openai/gpt-4o-mini", message=f"hi {uuid.uuid4()}", cache=False
        )
        events = await chat.events(started["sessionId"])

    done = events[-1][2]
    assert events[-1][1] == "done", json.dumps(done)
    expected = (952 * 0.15 + 2048 * 0.075 + 4 * 0.60) / 1_000_000
    assert done["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert done["usage"]["promptTokens"] == 3000


async def test_openai_gets_one_prompt_cache_key_per_chat_that_names_nothing(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """OpenAI routes requests with one ``prompt_cache_key`` to the machine holding their
    prefix: a chat's turns share one, another chat has its own, and it is not the chat's id."""
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider) as chat,
    ):
        alice = await chat.world.register("alice")
        chat_ids = []
        for _ in range(2):
            first = await chat.start(
                alice["auth"], model="openai/gpt-4o-mini", message=f"hi {uuid.uuid4()}"
            )
            await chat.events(first["sessionId"])
            again = await chat.start(
                alice["auth"], model="openai/gpt-4o-mini", message="more", chatId=first["chatId"]
            )
            await chat.events(again["sessionId"])
            chat_ids.append(first["chatId"])

    keys = [r.body.get("prompt_cache_key") for r in provider.requests]
    assert len(keys) == 4
    assert all(isinstance(k, str) and len(k) == 32 for k in keys), keys
    assert keys[0] == keys[1] != keys[2] == keys[3]
    for key in keys:
        assert not any(part in key for c in chat_ids for part in c.split("-")), key


async def test_v1_callers_requests_share_a_prompt_cache_key_on_openai_only(
    providers: Providers,
) -> None:
    for _ in range(2):
        await providers.sdk.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": f"{uuid.uuid4()}"}]
        )
    first, second = (r.body["prompt_cache_key"] for r in providers.openai.requests)
    assert first == second
    assert str(providers.user_id).split("-")[0] not in first
    await providers.sdk.chat.completions.create(
        model="anthropic/claude-haiku-4-5",
        messages=[{"role": "user", "content": f"{uuid.uuid4()}"}],
    )
    assert "prompt_cache_key" not in providers.anthropic.requests[-1].body


async def test_a_replys_and_the_usages_cache_figures_are_kept_and_shown(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """What the provider read from and wrote to its cache is kept with the reply
    (``GET /api/chats/{id}``) and summed in ``/api/usage``."""
    async with _claude(stack_urls, unique) as (chat, _, cache, auth):
        system = f"{INSTRUCTIONS}{uuid.uuid4()}"
        first = await _turn(chat, auth, message="Who was Tycho Brahe?", systemPrompt=system)
        await _turn(chat, auth, message="And Kepler?", chatId=first["chatId"])
        read = await chat.client.get(f"/api/chats/{first['chatId']}", headers=auth)
        usage = await chat.client.get("/api/usage", headers=auth)

    assert read.status_code == 200, read.text
    replies = [m["usage"] for m in read.json()["messages"] if m["role"] == "assistant"]
    assert replies == [
        {
            "promptTokens": u.prompt_tokens,
            "completionTokens": 4,
            "cachedPromptTokens": u.cache_read_input_tokens,
            "cacheWriteTokens": u.cache_creation_input_tokens,
            "reasoningTokens": 0,
        }
        for u in cache.usages
    ]
    assert replies[1]["cachedPromptTokens"] > 1024
    [claude] = usage.json()["byModel"]
    assert claude["cachedPromptTokens"] == sum(u.cache_read_input_tokens for u in cache.usages)
    assert claude["cacheWriteTokens"] == sum(u.cache_creation_input_tokens for u in cache.usages)
    assert usage.json()["total"]["cachedPromptTokens"] == claude["cachedPromptTokens"]
