"""Hunt (s19): providers' prompt caches and their pricing (commit 56a0aed), through the real app
and container (Postgres, Redis) with loopback providers: the Claude request shapes that carry
``cache_control`` breakpoints, the usage and cost of replies stopped, cut, served again or
answered by a fallback, and the ``name`` of /v1 messages."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import openai
import pytest
from redis.asyncio import Redis

from tests.integration.http.test_chat_flow import _reply
from tests.integration.http.test_prompt_caching import (
    CLAUDE,
    INSTRUCTIONS,
    _claude,
    _turn,
    billed,
    breakpoints,
)
from tests.integration.http.test_s17_hunt_c import _v1_plan
from tests.integration.http.test_v1_images import DATA_URL
from tests.integration.http.test_v1_tools import TOOLS, Providers, providers
from tests.support.fake_prompt_cache import CacheUsage, PromptCacheAnthropic, refused_breakpoints
from tests.support.fake_providers import (
    RecordedRequest,
    Reply,
    ScriptedCall,
    anthropic_error,
    anthropic_error_event,
    anthropic_stream,
    anthropic_tool_stream,
    openai_chunk,
    openai_stream,
    sse,
)
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.jobs import TitleChat
from whalli.domain.model.users import Plan

__all__ = ["providers"]  # the fixture, shared with the tool tests

STRICT_CLAUDE = "anthropic/claude-haiku-4-5"  # takes output_config.format


def cached_answer(
    cache: PromptCacheAnthropic,
    chunks: Sequence[bytes],
    *,
    delta_usage: Callable[[CacheUsage], dict[str, Any]] | None = None,
    **reply: Any,
) -> Callable[[RecordedRequest], Reply]:
    """A scripted Anthropic answer (``chunks``) given by ``cache``: refused as the API refuses
    bad breakpoints, else its ``message_start`` (and with ``delta_usage``, its
    ``message_delta``) carrying the cache's usage of the request."""

    def answer(request: RecordedRequest) -> Reply:
        refused = refused_breakpoints(request.body)
        if refused is not None:
            return Reply(status=400, body=anthropic_error("invalid_request_error", refused))
        usage = cache._use(request.body)
        cache.usages.append(usage)
        pieces = []
        for piece in chunks:
            event, data = piece.decode().split("data: ", 1)
            document = json.loads(data)
            if document.get("type") == "message_start":
                document["message"]["usage"] = {
                    "input_tokens": usage.input_tokens,
                    "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                    "cache_read_input_tokens": usage.cache_read_input_tokens,
                    "output_tokens": 1,
                }
            elif document.get("type") == "message_delta" and delta_usage is not None:
                document["usage"] = delta_usage(usage)
            pieces.append(f"{event}data: {json.dumps(document)}\n\n".encode())
        return Reply(chunks=pieces, **reply)

    return answer


def with_usage(
    chunks: Sequence[bytes], start: dict[str, Any], delta: dict[str, Any]
) -> list[bytes]:
    """``chunks`` with these ``message_start`` and ``message_delta`` usages."""
    pieces = []
    for piece in chunks:
        event, data = piece.decode().split("data: ", 1)
        document = json.loads(data)
        if document.get("type") == "message_start":
            document["message"]["usage"] = start
        elif document.get("type") == "message_delta":
            document["usage"] = delta
        pieces.append(f"{event}data: {json.dumps(document)}\n\n".encode())
    return pieces


def checked(reply: Reply) -> Callable[[RecordedRequest], Reply]:
    """``reply``, given only to a request whose breakpoints the API would take."""

    def answer(request: RecordedRequest) -> Reply:
        refused = refused_breakpoints(request.body)
        if refused is not None:
            return Reply(status=400, body=anthropic_error("invalid_request_error", refused))
        return reply

    return answer


def system() -> str:
    return f"{INSTRUCTIONS}{uuid.uuid4()}"


async def _v1_claude(providers: Providers) -> PromptCacheAnthropic:
    await _v1_plan(providers, Plan.PRO)
    cache = PromptCacheAnthropic()
    providers.anthropic._default = cache
    return cache


async def _usage_summary(providers: Providers) -> dict[str, Any]:
    base = str(providers.sdk.base_url).removesuffix("/v1/")
    headers = {"Authorization": f"Bearer {providers.sdk.api_key}"}
    async with httpx.AsyncClient(base_url=base) as client:
        summary: dict[str, Any] = (await client.get("/api/usage", headers=headers)).json()
    return summary


def _done(events: list[tuple[str | None, str, dict[str, Any]]]) -> dict[str, Any]:
    assert events[-1][1] == "done", events[-1]
    return events[-1][2]


# --- 1. Claude's request shapes with the breakpoints ------------------------------------------
async def test_a_chat_with_extended_thinking_is_cached_and_charged_as_billed(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _claude(stack_urls, unique) as (chat, anthropic, cache, auth):
        params = {"reasoningEffort": "low"}
        first = await _turn(chat, auth, message="Who?", systemPrompt=system(), params=params)
        second = await _turn(
            chat, auth, message="And Kepler?", chatId=first["chatId"], params=params
        )

    assert all("thinking" in r.body for r in anthropic.requests)
    assert [breakpoints(r.body) for r in anthropic.requests] == [
        ["system", "messages[0]"],
        ["system", "messages[0]", "messages[2]"],
    ]
    assert cache.usages[1].cache_read_input_tokens == cache.usages[0].prompt_tokens
    assert second["costUsd"] == pytest.approx(billed(cache.usages[1], 4), rel=1e-9)


async def test_a_v1_tool_loop_with_thinking_reads_its_first_step_from_claudes_cache(
    providers: Providers,
) -> None:
    cache = await _v1_claude(providers)
    calls = [ScriptedCall("toolu_paris", "get_weather", ['{"city": "Paris"}'])]
    providers.anthropic.script(cached_answer(cache, anthropic_tool_stream(calls)))
    messages: list[Any] = [
        {"role": "system", "content": system()},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    step = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=messages, tools=TOOLS, reasoning_effort="low"
    )
    assert step.choices[0].finish_reason == "tool_calls"
    messages.append(step.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": "toolu_paris", "content": "18°C"})

    final = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=messages, tools=TOOLS, reasoning_effort="low"
    )

    sent = providers.anthropic.requests[-1].body
    assert sent["messages"][-1]["content"][-1]["type"] == "tool_result"
    assert "cache_control" in sent["messages"][-1]["content"][-1]
    first, second = cache.usages
    assert second.cache_read_input_tokens == first.prompt_tokens
    assert final.usage is not None
    assert final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens == first.prompt_tokens


async def test_a_tool_step_after_many_parallel_calls_still_reads_the_conversation_from_cache(
    providers: Providers,
) -> None:
    cache = await _v1_claude(providers)
    calls = [
        ScriptedCall(f"toolu_{n}", "get_weather", [f'{{"city": "City {n}"}}']) for n in range(11)
    ]
    providers.anthropic.script(cached_answer(cache, anthropic_tool_stream(calls)))
    messages: list[Any] = [{"role": "user", "content": f"{system()} Weather in 11 cities?"}]
    step = await providers.sdk.chat.completions.create(model=CLAUDE, messages=messages, tools=TOOLS)
    assert len(step.choices[0].message.tool_calls or []) == 11
    messages.append(step.choices[0].message.model_dump(exclude_none=True))
    messages += [
        {"role": "tool", "tool_call_id": f"toolu_{n}", "content": f"{n}°C"} for n in range(11)
    ]

    await providers.sdk.chat.completions.create(model=CLAUDE, messages=messages, tools=TOOLS)

    first, second = cache.usages
    assert first.cache_creation_input_tokens > 1024
    assert second.cache_read_input_tokens == first.prompt_tokens


async def test_a_prefill_turn_is_marked_and_accepted(providers: Providers) -> None:
    cache = await _v1_claude(providers)
    messages: list[Any] = [
        {"role": "system", "content": system()},
        {"role": "user", "content": "Who was Tycho Brahe?"},
        {"role": "assistant", "content": "Tycho Brahe was"},
    ]

    completion = await providers.sdk.chat.completions.create(model=CLAUDE, messages=messages)

    assert completion.choices[0].message.content == "Hello, world!"
    body = providers.anthropic.requests[-1].body
    assert breakpoints(body) == ["system", "messages[1]"]
    assert body["messages"][-1]["role"] == "assistant"
    assert cache.usages[0].cache_creation_input_tokens > 1024


async def test_a_forced_format_tool_request_is_marked_and_accepted(providers: Providers) -> None:
    cache = await _v1_claude(providers)
    messages: list[Any] = [
        {"role": "system", "content": system()},
        {"role": "user", "content": "Greet me in JSON."},
    ]

    completion = await providers.sdk.chat.completions.create(
        model=CLAUDE, messages=messages, response_format={"type": "json_object"}
    )

    assert json.loads(completion.choices[0].message.content or "") == {"greeting": "Hello, world!"}
    body = providers.anthropic.requests[-1].body
    assert body["tool_choice"]["type"] == "tool"
    assert breakpoints(body) == ["system", "messages[0]"]
    assert len(cache.usages) == 1


async def test_a_native_output_format_request_is_marked_and_accepted(
    providers: Providers,
) -> None:
    cache = await _v1_claude(providers)
    schema = {
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
        "additionalProperties": False,
    }
    completion = await providers.sdk.chat.completions.create(
        model=STRICT_CLAUDE,
        messages=[
            {"role": "system", "content": system()},
            {"role": "user", "content": "Greet me."},
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "greet", "schema": schema, "strict": True},
        },
    )

    assert json.loads(completion.choices[0].message.content or "") == {"greeting": "Hello, world!"}
    body = providers.anthropic.requests[-1].body
    assert "output_config" in body
    assert breakpoints(body) == ["system", "messages[0]"]
    assert len(cache.usages) == 1


async def test_an_image_last_is_the_marked_block(providers: Providers) -> None:
    cache = await _v1_claude(providers)
    messages: list[Any] = [
        {"role": "system", "content": system()},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": DATA_URL}},
            ],
        },
    ]

    completion = await providers.sdk.chat.completions.create(model=CLAUDE, messages=messages)

    assert completion.choices[0].message.content == "Hello, world!"
    last = providers.anthropic.requests[-1].body["messages"][-1]["content"]
    assert [block["type"] for block in last] == ["text", "image"]
    assert "cache_control" in last[-1]
    assert "cache_control" not in last[0]
    assert len(cache.usages) == 1


async def test_empty_turns_and_a_blank_system_prompt_carry_no_breakpoint(
    providers: Providers,
) -> None:
    """A blank system prompt is not made a (refused) marked text block, and the turns left
    out for being empty are not where the last breakpoint goes."""
    cache = await _v1_claude(providers)
    messages: list[Any] = [
        {"role": "system", "content": "   \n "},
        {"role": "user", "content": f"First question {uuid.uuid4()}"},
        {"role": "assistant", "content": "An answer."},
        {"role": "user", "content": "And another one?"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "  "},
    ]

    completion = await providers.sdk.chat.completions.create(model=CLAUDE, messages=messages)

    assert completion.choices[0].message.content == "Hello, world!"
    body = providers.anthropic.requests[-1].body
    assert not isinstance(body.get("system"), list)
    assert breakpoints(body) == ["messages[0]", "messages[2]"]
    assert body["messages"][-1]["content"][-1]["text"] == "And another one?"
    assert len(cache.usages) == 1


async def test_several_system_messages_and_many_turns_use_three_breakpoints(
    providers: Providers,
) -> None:
    cache = await _v1_claude(providers)
    messages: list[Any] = [{"role": "system", "content": system()}]
    for n in range(6):
        messages += [
            {"role": "user", "content": f"Question {n}"},
            {"role": "system", "content": f"Note {n}"},
            {"role": "assistant", "content": f"Answer {n}"},
        ]
    messages.append({"role": "user", "content": "Last question"})

    await providers.sdk.chat.completions.create(model=CLAUDE, messages=messages)

    body = providers.anthropic.requests[-1].body
    assert breakpoints(body) == ["system", "messages[10]", "messages[12]"]
    assert len(cache.usages) == 1


# --- 2. usage and cost of Claude replies ---------------------------------------------------
async def test_message_delta_repeating_the_cache_counts_is_not_counted_twice(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    def repeated(usage: CacheUsage) -> dict[str, Any]:
        return {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": 7,
        }

    async with _claude(stack_urls, unique) as (chat, anthropic, cache, auth):
        first = await _turn(chat, auth, message="Who was Tycho?", systemPrompt=system())
        anthropic.script(cached_answer(cache, anthropic_stream(), delta_usage=repeated))
        second = await _turn(chat, auth, message="And Kepler?", chatId=first["chatId"])

    usage = cache.usages[1]
    assert usage.cache_read_input_tokens > 1024
    assert second["usage"]["promptTokens"] == usage.prompt_tokens
    assert second["usage"]["completionTokens"] == 7
    assert second["costUsd"] == pytest.approx(billed(usage, 7), rel=1e-9)


async def test_a_message_delta_with_null_cache_counts_keeps_the_prompts_cached_part(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    start = {
        "input_tokens": 3,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 5000,
        "output_tokens": 1,
    }
    delta = {
        "input_tokens": 3,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
        "output_tokens": 7,
    }
    async with _claude(stack_urls, unique) as (chat, anthropic, _cache, auth):
        anthropic.script(checked(Reply(chunks=with_usage(anthropic_stream(), start, delta))))
        done = await _turn(chat, auth, message=f"Who was Tycho? {uuid.uuid4()}")

    assert done["usage"]["promptTokens"] == 5003
    expected = (3 * 3.00 + 5000 * 0.30 + 7 * 15.00) / 1_000_000
    assert done["costUsd"] == pytest.approx(expected, rel=1e-9)


async def test_a_reply_cut_by_a_local_stop_is_priced_with_its_cache_counts(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """A whitespace-only stop (applied by Whalli) closes the request before the output
    count: the prompt's split said in ``message_start`` is still priced."""
    async with _claude(stack_urls, unique) as (chat, anthropic, cache, auth):
        first = await _turn(chat, auth, message="Who was Tycho?", systemPrompt=system())
        anthropic.script(cached_answer(cache, anthropic_stream(["Hello", "\nrest"]), hold=True))
        second = await _turn(
            chat, auth, message="And Kepler?", chatId=first["chatId"], params={"stop": ["\n"]}
        )
        reply = await _reply(chat, first["chatId"])

    assert reply.content == "Hello"
    usage = cache.usages[1]
    assert usage.cache_read_input_tokens > 1024
    assert second["usage"]["promptTokens"] == usage.prompt_tokens
    completion = second["usage"]["completionTokens"]
    assert second["costUsd"] == pytest.approx(billed(usage, completion), rel=1e-9)


async def test_a_stopped_reply_is_priced_with_the_cache_counts_claude_reported(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _claude(stack_urls, unique) as (chat, anthropic, cache, auth):
        first = await _turn(chat, auth, message="Who was Tycho?", systemPrompt=system())
        partial = anthropic_stream(["partial"], stop=False)[:4]  # no message_delta yet
        anthropic.script(cached_answer(cache, partial, hold=True))
        started = await chat.start(
            auth, model=CLAUDE, message="And Kepler?", chatId=first["chatId"]
        )
        head = await chat.events(started["sessionId"], limit=1)
        stopped = await chat.client.post(
            f"/api/chat/sessions/{started['sessionId']}/stop", headers=auth
        )
        assert stopped.status_code == 202
        events = await chat.events(started["sessionId"], last_event_id=head[-1][0])

    done = _done(events)
    assert done["status"] == "aborted"
    usage = cache.usages[1]
    assert usage.cache_read_input_tokens > 1024
    completion = done["usage"]["completionTokens"]
    assert done["costUsd"] == pytest.approx(billed(usage, completion), rel=1e-6)
    assert done["usage"]["promptTokens"] == usage.prompt_tokens


async def test_a_reply_failing_mid_stream_is_priced_with_the_cache_counts_claude_reported(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _claude(stack_urls, unique) as (chat, anthropic, cache, auth):
        first = await _turn(chat, auth, message="Who was Tycho?", systemPrompt=system())
        broken = [*anthropic_stream(["partial"], stop=False)[:4], anthropic_error_event()]
        anthropic.script(cached_answer(cache, broken))
        started = await chat.start(
            auth, model=CLAUDE, message="And Kepler?", chatId=first["chatId"]
        )
        events = await chat.events(started["sessionId"])
        reply = await _reply(chat, first["chatId"])

    assert events[-1][1] == "error"
    usage = cache.usages[1]
    assert usage.cache_read_input_tokens > 1024
    assert reply.content == "partial"
    completion = reply.usage.completion_tokens
    assert float(reply.cost_usd) == pytest.approx(billed(usage, completion), rel=1e-4)


async def test_the_title_job_does_not_pay_for_a_cache_write_nothing_reads(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    queue = f"hunt-s19-{unique}"
    first_message = (
        "天文学の歴史について、ティコ・ブラーエとケプラーの仕事を詳しく教えてください。" * 60
    )
    try:
        async with _claude(stack_urls, unique, WHALLI_QUEUE_NAME=queue) as (
            chat, anthropic, cache, auth,
        ):  # fmt: skip
            done = await _turn(chat, auth, message=f"{first_message} {uuid.uuid4()}")
            handler = await resolved(chat.world.container.services.title_chat())
            await handler.execute(TitleChat(chat_id=uuid.UUID(done["chatId"]), expected_title=None))
    finally:
        async with Redis.from_url(stack_urls.redis_url) as client:
            async for key in client.scan_iter(match=f"{queue}:*"):
                await client.delete(key)

    title = anthropic.requests[-1].body
    assert "Write a title" in json.dumps(title.get("system"))
    assert len(cache.usages) == 2
    assert cache.usages[1].prompt_tokens > 1024  # long enough to be cached
    assert breakpoints(title) == []
    assert cache.usages[1].cache_creation_input_tokens == 0


async def test_a_reply_served_from_whallis_cache_costs_nothing(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _claude(stack_urls, unique) as (chat, anthropic, cache, auth):
        prompt = f"Who was Tycho? {uuid.uuid4()}"
        sys_prompt = system()
        answers = []
        for _ in range(2):
            started = await chat.start(auth, model=CLAUDE, message=prompt, systemPrompt=sys_prompt)
            answers.append(_done(await chat.events(started["sessionId"])))
        usage = await chat.client.get("/api/usage", headers=auth)

    assert len(anthropic.requests) == 1
    assert [a["cached"] for a in answers] == [False, True]
    assert answers[0]["costUsd"] == pytest.approx(billed(cache.usages[0], 4), rel=1e-9)
    assert answers[1]["costUsd"] == 0
    by_model = {m["model"]: m for m in usage.json()["byModel"]}
    assert by_model[CLAUDE]["costUsd"] == pytest.approx(answers[0]["costUsd"], abs=1e-6)


async def test_v1_served_again_from_whallis_cache_costs_nothing_in_usage(
    providers: Providers,
) -> None:
    cache = await _v1_claude(providers)
    messages: list[Any] = [
        {"role": "system", "content": system()},
        {"role": "user", "content": "Who was Tycho Brahe?"},
    ]
    completions = [
        await providers.sdk.chat.completions.create(
            model=CLAUDE, messages=messages, extra_body={"cache": True}
        )
        for _ in range(2)
    ]

    assert len(providers.anthropic.requests) == 1
    assert [c.usage.prompt_tokens for c in completions if c.usage] == [
        cache.usages[0].prompt_tokens
    ] * 2
    summary = await _usage_summary(providers)
    by_model = {m["model"]: m for m in summary["byModel"]}
    assert by_model[CLAUDE]["costUsd"] == pytest.approx(billed(cache.usages[0], 4), abs=1e-6)


async def test_a_fallback_is_charged_at_its_own_cached_input_price(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Claude down before the first token: gpt-4o answers, its cached input at $1.25/1M."""
    pieces = openai_stream(usage=None, done=False)
    chunk = openai_chunk({}) | {"choices": []}
    chunk["usage"] = {
        "prompt_tokens": 4000,
        "completion_tokens": 4,
        "total_tokens": 4004,
        "prompt_tokens_details": {"cached_tokens": 3072},
    }
    pieces += [sse(chunk), sse("[DONE]")]
    overloaded = Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded"))
    async with _claude(stack_urls, unique) as (chat, anthropic, _cache, auth):
        anthropic.script(*[overloaded] * 5)
        chat.provider.script(Reply(chunks=pieces))
        done = await _turn(chat, auth, message=f"Who was Tycho? {uuid.uuid4()}")
        reply = await _reply(chat, done["chatId"])

    assert reply.model == "openai/gpt-4o"
    expected = (928 * 2.50 + 3072 * 1.25 + 4 * 10.00) / 1_000_000
    assert done["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert float(reply.cost_usd) == pytest.approx(expected, rel=1e-6)


async def test_cached_tokens_over_the_prompt_are_priced_as_the_whole_prompt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """A provider saying it read more from its cache than the prompt held is charged the
    prompt at the cached price, never a negative amount."""
    pieces = openai_stream(usage=None, done=False)
    chunk = openai_chunk({}) | {"choices": []}
    chunk["usage"] = {
        "prompt_tokens": 100,
        "completion_tokens": 4,
        "total_tokens": 104,
        "prompt_tokens_details": {"cached_tokens": 5000},
    }
    pieces += [sse(chunk), sse("[DONE]")]
    async with _claude(stack_urls, unique) as (chat, _anthropic, _cache, auth):
        chat.provider.script(Reply(chunks=pieces))
        started = await chat.start(
            auth, model="openai/gpt-4o-mini", message=f"hi {uuid.uuid4()}", cache=False
        )
        done = _done(await chat.events(started["sessionId"]))

    expected = (100 * 0.075 + 4 * 0.60) / 1_000_000
    assert done["costUsd"] == pytest.approx(expected, rel=1e-9)


async def test_v1_streamed_usage_carries_claudes_cache_reads(providers: Providers) -> None:
    cache = await _v1_claude(providers)
    messages: list[Any] = [{"role": "system", "content": system()}]
    reported = []
    for question in ("Who was Tycho Brahe?", "And Kepler?"):
        messages.append({"role": "user", "content": question})
        stream = await providers.sdk.chat.completions.create(
            model=CLAUDE, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        assert usage is not None
        assert usage.prompt_tokens_details is not None
        reported.append((usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens))
        messages.append({"role": "assistant", "content": text})

    first, second = cache.usages
    assert reported == [
        (first.prompt_tokens, 0),
        (second.prompt_tokens, second.cache_read_input_tokens),
    ]
    assert second.cache_read_input_tokens > 1024


async def test_chat_turns_add_up_in_usage_as_billed(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _claude(stack_urls, unique) as (chat, _anthropic, cache, auth):
        first = await _turn(chat, auth, message="Who was Tycho?", systemPrompt=system())
        await _turn(chat, auth, message="And Kepler?", chatId=first["chatId"])
        await _turn(chat, auth, message="And Galileo?", chatId=first["chatId"])
        summary = (await chat.client.get("/api/usage", headers=auth)).json()

    by_model = {m["model"]: m for m in summary["byModel"]}
    assert by_model[CLAUDE]["promptTokens"] == sum(u.prompt_tokens for u in cache.usages)
    expected = sum(billed(u, 4) for u in cache.usages)
    assert by_model[CLAUDE]["costUsd"] == pytest.approx(expected, abs=1e-6)


# --- 3. /v1 message names ----------------------------------------------------------------------
async def test_names_reach_openai_on_every_speaker_but_the_tool(providers: Providers) -> None:
    providers.openai.script(
        Reply(chunks=openai_stream()),
    )
    messages: list[Any] = [
        {"role": "system", "content": "Be brief.", "name": "rules"},
        {"role": "user", "content": f"Hi {uuid.uuid4()}", "name": "alice"},
        {
            "role": "assistant",
            "content": None,
            "name": "helper",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "local_time", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
        {"role": "user", "content": "Thanks", "name": "bob"},
    ]

    await providers.sdk.chat.completions.create(
        model="openai/gpt-4o-mini", messages=messages, tools=TOOLS
    )

    sent = providers.openai.requests[-1].body["messages"]
    assert [m.get("name") for m in sent] == ["rules", "alice", "helper", None, "bob"]


async def test_names_are_not_sent_to_claude(providers: Providers) -> None:
    cache = await _v1_claude(providers)
    messages: list[Any] = [
        {"role": "system", "content": system(), "name": "rules"},
        {"role": "user", "content": "Hi", "name": "alice"},
        {"role": "assistant", "content": "Hello alice", "name": "helper"},
        {"role": "user", "content": "Hi too", "name": "bob"},
    ]

    completion = await providers.sdk.chat.completions.create(model=CLAUDE, messages=messages)

    assert completion.choices[0].message.content == "Hello, world!"
    body = providers.anthropic.requests[-1].body
    assert all("name" not in turn for turn in body["messages"])
    assert breakpoints(body) == ["system", "messages[0]", "messages[2]"]
    assert len(cache.usages) == 1


async def test_a_name_keys_whallis_cache_on_every_role(providers: Providers) -> None:
    question = f"Hi {uuid.uuid4()}"

    async def ask(name: str | None) -> None:
        said: dict[str, Any] = {"role": "assistant", "content": "Earlier."}
        if name is not None:
            said["name"] = name
        messages: list[Any] = [{"role": "user", "content": question}, said]
        messages.append({"role": "user", "content": "Go on."})
        await providers.sdk.chat.completions.create(
            model="openai/gpt-4o-mini", messages=messages, extra_body={"cache": True}
        )

    for name in ("helper", "other", None, "helper"):
        await ask(name)

    assert len(providers.openai.requests) == 3  # the last one was the first's again


async def test_a_name_openai_would_refuse_is_a_400_on_any_role(providers: Providers) -> None:
    for role, name in (("assistant", "a b"), ("system", "x/y"), ("user", "")):
        with pytest.raises(openai.BadRequestError):
            await providers.sdk.chat.completions.create(
                model="openai/gpt-4o-mini",
                messages=[
                    {"role": role, "content": "x", "name": name},  # type: ignore[misc]
                    {"role": "user", "content": f"hi {uuid.uuid4()}"},
                ],
            )
    assert providers.openai.requests == []
