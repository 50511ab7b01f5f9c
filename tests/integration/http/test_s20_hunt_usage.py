"""Hunt (s20): usage, cost and metrics accounting, through the real app and container (Postgres,
Redis) with loopback OpenAI and Anthropic providers, across every way a reply ends and every
route: the ``done`` event, the stored message (GET /api/chats/{id}), GET /api/usage (of the
test's own fresh user), /v1 usage objects and the Prometheus counters (GET /api/metrics) must
agree with each other and with the catalog's prices for the counts the provider reported.

Each test runs the shipped catalog plus two models only it uses (``openai/s20u-<unique>-gpt``
and ``anthropic/s20u-<unique>-claude``, falling back to the former), so that the Prometheus
label sets of those models are touched by that test alone and counter deltas are exact."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from redis.asyncio import Redis

from tests.integration.http.test_chat_flow import Chat, _app
from tests.integration.http.test_s19_hunt_cache import with_usage
from tests.integration.http.test_v1_tools import TOOLS
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    Reply,
    ScriptedCall,
    anthropic_default,
    anthropic_error,
    anthropic_stream,
    openai_chunk,
    openai_default,
    openai_error,
    openai_stream,
    openai_tool_stream,
    sse,
)
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.jobs import TitleChat

SHIPPED = Path(__file__).parents[3] / "catalog" / "models.toml"
# the test models' prices, USD per 1M tokens
GPT_IN, GPT_OUT, GPT_CACHED = 2.00, 8.00, 0.50
CLAUDE_IN, CLAUDE_OUT = 3.00, 15.00
CLAUDE_READ, CLAUDE_WRITE = CLAUDE_IN * 0.1, CLAUDE_IN * 1.25


def gpt_cost(prompt: int, completion: int, cached: int = 0) -> float:
    cached = min(cached, prompt)
    return ((prompt - cached) * GPT_IN + cached * GPT_CACHED + completion * GPT_OUT) / 1e6


def claude_cost(fresh: int, read: int, written: int, completion: int) -> float:
    return (
        fresh * CLAUDE_IN + read * CLAUDE_READ + written * CLAUDE_WRITE + completion * CLAUDE_OUT
    ) / 1e6


def _catalog(tmp_path: Path, gpt: str, claude: str) -> str:
    extra = f"""

[[model]]
id = "{gpt}"
provider = "openai"
upstream = "gpt-s20u"
min_plan = "free"
input_usd_per_mtok = {GPT_IN}
output_usd_per_mtok = {GPT_OUT}
cached_input_usd_per_mtok = {GPT_CACHED}
context_window = 128000
max_output_tokens = 16384

[[model]]
id = "{claude}"
provider = "anthropic"
upstream = "claude-s20u"
min_plan = "free"
input_usd_per_mtok = {CLAUDE_IN}
output_usd_per_mtok = {CLAUDE_OUT}
context_window = 200000
max_output_tokens = 64000
fallback = "{gpt}"
"""
    path = tmp_path / "models.toml"
    path.write_text(SHIPPED.read_text() + extra)
    return str(path)


@dataclass
class World:
    chat: Chat
    openai: FakeProviderServer
    anthropic: FakeProviderServer
    gpt: str
    claude: str
    auth: dict[str, str]  # a fresh user's session
    v1: dict[str, str]  # the same user's API key
    user_id: str

    @property
    def client(self) -> httpx.AsyncClient:
        return self.chat.client  # type: ignore[return-value]


@asynccontextmanager
async def _world(
    stack_urls: StackUrls, unique: str, tmp_path: Path, **env: str
) -> AsyncIterator[World]:
    gpt, claude = f"openai/s20u-{unique}-gpt", f"anthropic/s20u-{unique}-claude"
    env = {"WHALLI_CHAT_TITLES": "off", **env}
    async with (
        FakeProviderServer(openai_default()) as openai_fake,
        FakeProviderServer(anthropic_default()) as anthropic_fake,
        _app(
            stack_urls, unique, openai_fake,
            WHALLI_ANTHROPIC_API_KEY=API_KEY, WHALLI_ANTHROPIC_BASE_URL=anthropic_fake.url,
            WHALLI_CATALOG_PATH=_catalog(tmp_path, gpt, claude), **env,
        ) as chat,
    ):  # fmt: skip
        user = await chat.world.register("usage")
        created = await chat.client.post("/api/keys", json={"name": "s20u"}, headers=user["auth"])
        assert created.status_code == 201, created.text
        v1 = {"Authorization": f"Bearer {created.json()['secret']}"}
        yield World(
            chat, openai_fake, anthropic_fake, gpt, claude, user["auth"], v1, user["user"]["id"]
        )


@pytest.fixture
async def world(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> AsyncIterator[World]:
    async with _world(stack_urls, unique, tmp_path) as w:
        yield w


# --- helpers --------------------------------------------------------------------------------
def openai_usage_stream(
    deltas: tuple[str, ...] = ("Hello", ", ", "world", "!"),
    *,
    prompt: int,
    completion: int,
    cached: int = 0,
    reasoning: int = 0,
) -> list[bytes]:
    """OpenAI's stream with a usage chunk carrying these counts (and their details)."""
    pieces = openai_stream(deltas, usage=None, done=False)
    chunk = openai_chunk({}) | {"choices": []}
    chunk["usage"] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    return [*pieces, sse(chunk), sse("[DONE]")]


def claude_usage_stream(
    deltas: tuple[str, ...] = ("Hello", ", ", "world", "!"),
    *,
    fresh: int,
    read: int = 0,
    written: int = 0,
    completion: int,
) -> list[bytes]:
    start = {
        "input_tokens": fresh,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": 1,
    }
    return with_usage(anthropic_stream(list(deltas)), start, {"output_tokens": completion})


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


@dataclass(frozen=True)
class Counters:
    """The Prometheus counters of one model (a label set only one test touches)."""

    prompt: float
    completion: float
    requests: dict[str, float]

    def minus(self, before: Counters) -> Counters:
        statuses = set(self.requests) | set(before.requests)
        return Counters(
            self.prompt - before.prompt,
            self.completion - before.completion,
            {
                s: self.requests.get(s, 0) - before.requests.get(s, 0)
                for s in statuses
                if self.requests.get(s, 0) - before.requests.get(s, 0)
            },
        )


async def counters(w: World, model: str) -> Counters:
    text = (await w.client.get("/api/metrics")).text
    tokens = "whalli_chat_tokens_total"
    statuses = ("complete", "aborted", "failed", "streaming", "pending", "chat_deleted")
    return Counters(
        metric(text, tokens, model=model, kind="prompt"),
        metric(text, tokens, model=model, kind="completion"),
        {
            s: metric(text, "whalli_chat_requests_total", model=model, status=s)
            for s in statuses
            if metric(text, "whalli_chat_requests_total", model=model, status=s)
        },
    )


async def usage_of(w: World, model: str) -> dict[str, Any]:
    """The fresh user's /api/usage figures of ``model`` (zeros when it has none)."""
    response = await w.client.get("/api/usage", headers=w.auth)
    assert response.status_code == 200, response.text
    for row in response.json()["byModel"]:
        if row["model"] == model:
            return dict(row)
    return {
        "requests": 0, "cachedRequests": 0, "promptTokens": 0, "completionTokens": 0,
        "costUsd": 0.0, "cachedPromptTokens": 0, "cacheWriteTokens": 0, "reasoningTokens": 0,
    }  # fmt: skip


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    keys = ("requests", "cachedRequests", "promptTokens", "completionTokens",
            "cachedPromptTokens", "cacheWriteTokens", "reasoningTokens")  # fmt: skip
    out: dict[str, Any] = {k: after[k] - before[k] for k in keys}
    out["costUsd"] = after["costUsd"] - before["costUsd"]
    return out


async def stored_reply(w: World, chat_id: str) -> dict[str, Any]:
    response = await w.client.get(f"/api/chats/{chat_id}", headers=w.auth)
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()["messages"][-1]
    assert message["role"] == "assistant"
    return message


async def turn(w: World, **body: Any) -> tuple[dict[str, Any], list[Any]]:
    """Start a reply and read its events to the end: (the start's answer, the events)."""
    started = await w.chat.start(w.auth, **body)
    events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)
    return started, events


def done_of(events: list[Any]) -> dict[str, Any]:
    assert events[-1][1] == "done", events[-1]
    done: dict[str, Any] = events[-1][2]
    return done


def question() -> str:
    return f"How much? {uuid.uuid4()}"  # unique: the shared Redis may hold cached replies


async def v1_sse(w: World, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A streamed /v1 completion's chunks (the JSON of each ``data:`` before ``[DONE]``)."""
    chunks: list[dict[str, Any]] = []
    async with w.client.stream(
        "POST", "/v1/chat/completions", json={**body, "stream": True}, headers=w.v1
    ) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                return chunks
            chunks.append(json.loads(data))
    raise AssertionError(f"no [DONE]: {chunks}")


# --- 1. a complete reply -------------------------------------------------------------------
async def test_s20u_a_complete_reply_agrees_everywhere_with_its_cached_and_reasoning_tokens(
    world: World,
) -> None:
    w = world
    world.openai.script(
        Reply(chunks=openai_usage_stream(prompt=1000, completion=50, cached=400, reasoning=20))
    )
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)

    started, events = await turn(w, model=w.gpt, message=question())

    done = done_of(events)
    stored = await stored_reply(w, started["chatId"])
    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    expected = gpt_cost(1000, 50, cached=400)
    assert (done["usage"]["promptTokens"], done["usage"]["completionTokens"]) == (1000, 50)
    assert done["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert (done["cached"], done["status"], done["finishReason"]) == (False, "complete", "stop")
    assert (done["usage"]["cachedPromptTokens"], done["usage"]["cacheWriteTokens"]) == (400, 0)
    assert done["usage"]["reasoningTokens"] == 20
    assert stored["usage"]["promptTokens"] == 1000
    assert stored["usage"]["completionTokens"] == 50
    assert stored["usage"]["cachedPromptTokens"] == 400
    assert stored["usage"]["reasoningTokens"] == 20
    assert stored["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert (stored["cached"], stored["status"], stored["finishReason"]) == (
        False, "complete", "stop",
    )  # fmt: skip
    assert used["requests"] == 1
    assert used["cachedRequests"] == 0
    assert (used["promptTokens"], used["completionTokens"], used["cachedPromptTokens"]) == (
        1000, 50, 400,
    )  # fmt: skip
    assert used["costUsd"] == pytest.approx(expected, abs=1e-6)
    assert used["reasoningTokens"] == 20
    assert counted == Counters(1000, 50, {"complete": 1})
    summary = (await w.client.get("/api/usage", headers=w.auth)).json()
    for key in ("requests", "promptTokens", "completionTokens", "reasoningTokens"):
        assert summary["total"][key] == sum(m[key] for m in summary["byModel"])
        assert summary["total"][key] == sum(d[key] for d in summary["byDay"])


# --- 2. a reply stopped by the user ------------------------------------------------------------
async def test_s20u_a_stopped_reply_is_counted_once_with_the_same_estimate_everywhere(
    world: World,
) -> None:
    w = world
    gate = asyncio.Event()
    w.openai.script(Reply(chunks=openai_usage_stream(prompt=500, completion=40), gate=gate,
                          gate_after=2))  # fmt: skip
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)

    started = await w.chat.start(w.auth, model=w.gpt, message=question())
    head = await w.chat.events(started["sessionId"], limit=1)
    assert head[0][1] == "token"
    stopped = await w.client.post(f"/api/chat/sessions/{started['sessionId']}/stop", headers=w.auth)
    assert stopped.status_code == 202, stopped.text
    events = await asyncio.wait_for(
        w.chat.events(started["sessionId"], last_event_id=head[-1][0]), 20
    )

    done = done_of(events)
    stored = await stored_reply(w, started["chatId"])
    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    prompt, completion = done["usage"]["promptTokens"], done["usage"]["completionTokens"]
    assert (done["status"], done["finishReason"]) == ("aborted", "stopped")
    assert prompt > 0
    assert completion > 0
    assert done["costUsd"] == pytest.approx(gpt_cost(prompt, completion), rel=1e-9)
    assert (stored["status"], stored["finishReason"], stored["content"]) == (
        "aborted", "stopped", "Hello",
    )  # fmt: skip
    assert (stored["usage"]["promptTokens"], stored["usage"]["completionTokens"]) == (
        prompt, completion,
    )  # fmt: skip
    assert stored["costUsd"] == pytest.approx(done["costUsd"], rel=1e-9)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (
        1, prompt, completion,
    )  # fmt: skip
    assert used["costUsd"] == pytest.approx(done["costUsd"], abs=1e-6)
    assert counted == Counters(prompt, completion, {"aborted": 1})


# --- 3. a provider error mid-stream ---------------------------------------------------------
async def test_s20u_a_reply_failing_mid_stream_is_charged_its_partial_text_once(
    world: World,
) -> None:
    w = world
    pieces = openai_stream(("partial",), usage=None, done=False)[:2]
    w.openai.script(Reply(chunks=pieces, abort=True))
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)

    started, events = await turn(w, model=w.gpt, message=question())

    assert events[-1][1] == "error", events[-1]
    stored = await stored_reply(w, started["chatId"])
    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    prompt, completion = stored["usage"]["promptTokens"], stored["usage"]["completionTokens"]
    assert (stored["status"], stored["finishReason"], stored["content"]) == (
        "failed", "error", "partial",
    )  # fmt: skip
    assert prompt > 0
    assert completion > 0
    assert stored["costUsd"] == pytest.approx(gpt_cost(prompt, completion), rel=1e-9)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (
        1, prompt, completion,
    )  # fmt: skip
    assert used["costUsd"] == pytest.approx(stored["costUsd"], abs=1e-6)
    assert counted == Counters(prompt, completion, {"failed": 1})


# --- 4. a retry, then success ---------------------------------------------------------------
async def test_s20u_a_retried_call_is_counted_once(world: World) -> None:
    w = world
    w.openai.script(
        Reply(status=500, body=openai_error("The server had an error.", "server_error",
                                            "server_error")),
        Reply(chunks=openai_usage_stream(prompt=30, completion=7)),
    )  # fmt: skip
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)

    started, events = await turn(w, model=w.gpt, message=question())

    done = done_of(events)
    stored = await stored_reply(w, started["chatId"])
    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    assert len(w.openai.requests) == 2
    assert done["usage"]["promptTokens"] == stored["usage"]["promptTokens"] == 30
    assert done["costUsd"] == pytest.approx(gpt_cost(30, 7), rel=1e-9)
    assert stored["costUsd"] == pytest.approx(gpt_cost(30, 7), rel=1e-9)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (1, 30, 7)
    assert counted == Counters(30, 7, {"complete": 1})


# --- 5. a fallback taking over ---------------------------------------------------------------
async def test_s20u_a_fallbacks_reply_is_counted_under_the_fallback_only(world: World) -> None:
    w = world
    overloaded = Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded"))
    w.anthropic.script(overloaded, overloaded)
    w.openai.script(Reply(chunks=openai_usage_stream(prompt=60, completion=9, cached=10)))
    before = {m: (await usage_of(w, m), await counters(w, m)) for m in (w.gpt, w.claude)}

    started, events = await turn(w, model=w.claude, message=question())

    done = done_of(events)
    stored = await stored_reply(w, started["chatId"])
    expected = gpt_cost(60, 9, cached=10)
    assert stored["model"] == w.gpt
    assert done["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert stored["costUsd"] == pytest.approx(expected, rel=1e-9)
    gpt_used = delta(await usage_of(w, w.gpt), before[w.gpt][0])
    claude_used = delta(await usage_of(w, w.claude), before[w.claude][0])
    assert (gpt_used["requests"], gpt_used["promptTokens"], gpt_used["completionTokens"]) == (
        1, 60, 9,
    )  # fmt: skip
    assert gpt_used["costUsd"] == pytest.approx(expected, abs=1e-6)
    assert claude_used["requests"] == 0
    assert (await counters(w, w.gpt)).minus(before[w.gpt][1]) == Counters(60, 9, {"complete": 1})
    assert (await counters(w, w.claude)).minus(before[w.claude][1]) == Counters(0, 0, {})


# --- 6. a cache hit -------------------------------------------------------------------------
async def test_s20u_a_cache_hit_is_recorded_at_no_cost_and_the_provider_called_once(
    world: World,
) -> None:
    w = world
    w.openai.script(Reply(chunks=openai_usage_stream(prompt=80, completion=12)))
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)
    before_text = (await w.client.get("/api/metrics")).text
    asked = question()

    _first_start, first_events = await turn(w, model=w.gpt, message=asked)
    second_start, second_events = await turn(w, model=w.gpt, message=asked)

    first, second = done_of(first_events), done_of(second_events)
    stored = await stored_reply(w, second_start["chatId"])
    used = delta(await usage_of(w, w.gpt), before_usage)
    assert len(w.openai.requests) == 1
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["costUsd"] == pytest.approx(gpt_cost(80, 12), rel=1e-9)
    assert second["costUsd"] == 0
    assert (stored["cached"], stored["costUsd"], stored["status"]) == (True, 0, "complete")
    assert second["usage"]["promptTokens"] == stored["usage"]["promptTokens"] == 80
    assert (used["requests"], used["cachedRequests"]) == (2, 1)
    assert used["costUsd"] == pytest.approx(gpt_cost(80, 12), abs=1e-6)
    # as documented (ChatMetrics.reply): a cached reply's tokens count like /api/usage's
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    assert counted == Counters(160, 24, {"complete": 2})
    after_text = (await w.client.get("/api/metrics")).text
    for name in ("whalli_chat_cache_hits_total", "whalli_chat_cache_misses_total"):
        # global counters (other tests may add to them): at least this test's lookup
        assert _plain(after_text, name) - _plain(before_text, name) >= 1


def _plain(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- 7. a regenerate ------------------------------------------------------------------------
async def test_s20u_a_regenerated_reply_adds_its_own_usage_and_shows_it(world: World) -> None:
    w = world
    w.openai.script(
        Reply(chunks=openai_usage_stream(prompt=100, completion=10)),
        Reply(chunks=openai_usage_stream(("Another",), prompt=110, completion=3)),
    )
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)
    started, _ = await turn(w, model=w.gpt, message=question())

    regenerated = await w.client.post(
        "/api/chat/regenerate", json={"chatId": started["chatId"]}, headers=w.auth
    )
    assert regenerated.status_code == 201, regenerated.text
    events = await asyncio.wait_for(w.chat.events(regenerated.json()["sessionId"]), 20)

    done = done_of(events)
    stored = await stored_reply(w, started["chatId"])
    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    assert (done["usage"]["promptTokens"], done["usage"]["completionTokens"]) == (110, 3)
    assert done["costUsd"] == pytest.approx(gpt_cost(110, 3), rel=1e-9)
    assert (stored["content"], stored["usage"]["promptTokens"]) == ("Another", 110)
    assert stored["costUsd"] == pytest.approx(done["costUsd"], rel=1e-9)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (2, 210, 13)
    assert used["costUsd"] == pytest.approx(gpt_cost(100, 10) + gpt_cost(110, 3), abs=1e-6)
    assert counted == Counters(210, 13, {"complete": 2})


# --- 8. /v1 -------------------------------------------------------------------------------------
async def test_s20u_v1_usage_objects_agree_with_api_usage_in_every_mode(world: World) -> None:
    w = world
    w.openai.script(
        Reply(chunks=openai_usage_stream(prompt=40, completion=4, cached=8, reasoning=2)),
        Reply(chunks=openai_usage_stream(prompt=41, completion=5)),
        Reply(chunks=openai_usage_stream(prompt=42, completion=6)),
    )
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)

    def body() -> dict[str, Any]:
        return {"model": w.gpt, "messages": [{"role": "user", "content": question()}]}

    whole = await w.client.post("/v1/chat/completions", json=body(), headers=w.v1)
    assert whole.status_code == 200, whole.text
    with_usage_chunks = await v1_sse(w, {**body(), "stream_options": {"include_usage": True}})
    without_usage_chunks = await v1_sse(w, body())

    usage = whole.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        40, 4, 44,
    )  # fmt: skip
    assert usage["prompt_tokens_details"]["cached_tokens"] == 8
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 2
    streamed = with_usage_chunks[-1]["usage"]
    assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == (41, 5)
    assert all("usage" not in chunk for chunk in without_usage_chunks)
    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (3, 123, 15)
    assert (used["cachedPromptTokens"], used["reasoningTokens"]) == (8, 2)
    expected = gpt_cost(40, 4, cached=8) + gpt_cost(41, 5) + gpt_cost(42, 6)
    assert used["costUsd"] == pytest.approx(expected, abs=1e-6)
    assert counted == Counters(123, 15, {"complete": 3})


async def test_s20u_v1_a_tool_call_step_is_counted_and_priced(world: World) -> None:
    w = world
    call = ScriptedCall("call_1", "get_weather", ['{"city": ', '"Paris"}'])
    w.openai.script(Reply(chunks=openai_tool_stream([call], usage=(70, 15))))
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)

    step = await w.client.post(
        "/v1/chat/completions", headers=w.v1,
        json={"model": w.gpt, "messages": [{"role": "user", "content": question()}],
              "tools": TOOLS},
    )  # fmt: skip

    assert step.status_code == 200, step.text
    assert step.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert step.json()["usage"]["prompt_tokens"] == 70
    used = delta(await usage_of(w, w.gpt), before_usage)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (1, 70, 15)
    assert used["costUsd"] == pytest.approx(gpt_cost(70, 15), abs=1e-6)
    assert (await counters(w, w.gpt)).minus(before_metrics) == Counters(70, 15, {"complete": 1})


async def test_s20u_v1_a_cache_hit_costs_nothing_and_repeats_the_usage(world: World) -> None:
    w = world
    w.openai.script(Reply(chunks=openai_usage_stream(prompt=90, completion=11)))
    before_usage = await usage_of(w, w.gpt)
    body = {"model": w.gpt, "messages": [{"role": "user", "content": question()}], "cache": True}

    answers = [
        await w.client.post("/v1/chat/completions", json=body, headers=w.v1) for _ in range(2)
    ]

    assert len(w.openai.requests) == 1
    assert [a.json()["usage"]["prompt_tokens"] for a in answers] == [90, 90]
    used = delta(await usage_of(w, w.gpt), before_usage)
    assert (used["requests"], used["cachedRequests"]) == (2, 1)
    assert used["costUsd"] == pytest.approx(gpt_cost(90, 11), abs=1e-6)


async def test_s20u_v1_a_client_leaving_mid_stream_is_counted_once_as_aborted(
    world: World,
) -> None:
    w = world
    gate = asyncio.Event()
    w.openai.script(
        Reply(chunks=openai_usage_stream(prompt=300, completion=30), gate=gate, gate_after=2)
    )
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)
    body = {"model": w.gpt, "messages": [{"role": "user", "content": question()}],
            "stream": True}  # fmt: skip

    async with w.client.stream("POST", "/v1/chat/completions", json=body, headers=w.v1) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: ") and '"Hello"' in line:
                break
    for _ in range(200):  # the record is written once the server notices the client left
        used = delta(await usage_of(w, w.gpt), before_usage)
        if used["requests"]:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a second record, if any, would be written by now
    gate.set()

    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    assert used["requests"] == 1
    assert used["promptTokens"] > 0
    assert used["completionTokens"] > 0
    assert used["costUsd"] == pytest.approx(
        gpt_cost(used["promptTokens"], used["completionTokens"]), abs=1e-6
    )
    assert counted == Counters(used["promptTokens"], used["completionTokens"], {"aborted": 1})


async def test_s20u_v1_a_fallbacks_completion_is_counted_under_the_fallback_only(
    world: World,
) -> None:
    w = world
    overloaded = Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded"))
    w.anthropic.script(overloaded, overloaded)
    w.openai.script(Reply(chunks=openai_usage_stream(prompt=33, completion=4, cached=3)))
    before = {m: (await usage_of(w, m), await counters(w, m)) for m in (w.gpt, w.claude)}

    chunks = await v1_sse(
        w, {"model": w.claude, "messages": [{"role": "user", "content": question()}],
            "stream_options": {"include_usage": True}},
    )  # fmt: skip

    assert {c["model"] for c in chunks} == {w.gpt}
    assert chunks[-1]["usage"]["prompt_tokens"] == 33
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 3
    gpt_used = delta(await usage_of(w, w.gpt), before[w.gpt][0])
    assert (gpt_used["requests"], gpt_used["promptTokens"], gpt_used["completionTokens"]) == (
        1, 33, 4,
    )  # fmt: skip
    assert gpt_used["costUsd"] == pytest.approx(gpt_cost(33, 4, cached=3), abs=1e-6)
    assert delta(await usage_of(w, w.claude), before[w.claude][0])["requests"] == 0
    assert (await counters(w, w.gpt)).minus(before[w.gpt][1]) == Counters(33, 4, {"complete": 1})
    assert (await counters(w, w.claude)).minus(before[w.claude][1]) == Counters(0, 0, {})


async def test_s20u_v1_a_completion_failing_mid_stream_is_charged_its_partial_text_once(
    world: World,
) -> None:
    w = world
    pieces = openai_stream(("partial",), usage=None, done=False)[:2]
    w.openai.script(Reply(chunks=pieces, abort=True))
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)
    body = {"model": w.gpt, "messages": [{"role": "user", "content": question()}],
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip

    lines = []
    async with w.client.stream("POST", "/v1/chat/completions", json=body, headers=w.v1) as r:
        assert r.status_code == 200
        lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]

    assert '"error"' in lines[-1]
    assert "[DONE]" not in lines[-1]
    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    prompt, completion = used["promptTokens"], used["completionTokens"]
    assert used["requests"] == 1
    assert prompt > 0
    assert completion > 0
    assert used["costUsd"] == pytest.approx(gpt_cost(prompt, completion), abs=1e-6)
    assert counted == Counters(prompt, completion, {"failed": 1})


# --- 9. Claude's prompt-cache counts ---------------------------------------------------------
async def test_s20u_claudes_cache_reads_and_writes_agree_in_chat_v1_and_usage(
    world: World,
) -> None:
    w = world
    counts = {"fresh": 100, "read": 3000, "written": 2000, "completion": 9}
    w.anthropic.script(
        Reply(chunks=claude_usage_stream(**counts)), Reply(chunks=claude_usage_stream(**counts))
    )
    before_usage, before_metrics = await usage_of(w, w.claude), await counters(w, w.claude)
    expected = claude_cost(100, 3000, 2000, 9)

    started, events = await turn(w, model=w.claude, message=question())
    completion = await w.client.post(
        "/v1/chat/completions", headers=w.v1,
        json={"model": w.claude, "messages": [{"role": "user", "content": question()}]},
    )  # fmt: skip

    done = done_of(events)
    stored = await stored_reply(w, started["chatId"])
    assert done["usage"]["promptTokens"] == stored["usage"]["promptTokens"] == 5100
    assert (done["usage"]["cachedPromptTokens"], done["usage"]["cacheWriteTokens"]) == (3000, 2000)
    assert done["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert stored["costUsd"] == pytest.approx(expected, rel=1e-9)
    assert (stored["usage"]["cachedPromptTokens"], stored["usage"]["cacheWriteTokens"]) == (
        3000, 2000,
    )  # fmt: skip
    assert completion.status_code == 200, completion.text
    usage = completion.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (5100, 9)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 3000
    used = delta(await usage_of(w, w.claude), before_usage)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (2, 10200, 18)
    assert (used["cachedPromptTokens"], used["cacheWriteTokens"]) == (6000, 4000)
    assert used["costUsd"] == pytest.approx(2 * expected, abs=1e-6)
    counted = (await counters(w, w.claude)).minus(before_metrics)
    assert counted == Counters(10200, 18, {"complete": 2})


async def test_s20u_a_claude_reply_stopped_before_its_first_text_is_charged_its_prompt(
    world: World,
) -> None:
    w = world
    head = claude_usage_stream(fresh=40, read=3000, written=1500, completion=9)[:3]
    w.anthropic.script(Reply(chunks=head, hold=True))  # message_start, block start, ping
    before_usage = await usage_of(w, w.claude)

    started = await w.chat.start(w.auth, model=w.claude, message=question())
    for _ in range(200):
        if w.anthropic.requests:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # message_start read by Whalli (no test of speed: a sync point)
    stopped = await w.client.post(f"/api/chat/sessions/{started['sessionId']}/stop", headers=w.auth)
    assert stopped.status_code == 202
    events = await asyncio.wait_for(w.chat.events(started["sessionId"]), 20)

    done = done_of(events)
    stored = await stored_reply(w, started["chatId"])
    used = delta(await usage_of(w, w.claude), before_usage)
    assert done["status"] == "aborted"
    expected = claude_cost(40, 3000, 1500, done["usage"]["completionTokens"])
    assert (stored["usage"]["promptTokens"], used["promptTokens"]) == (4540, 4540)
    assert done["usage"]["promptTokens"] == 4540
    assert done["costUsd"] == pytest.approx(expected, rel=1e-6)
    assert used["costUsd"] == pytest.approx(expected, abs=1e-6)


# --- 10. a reply whose chat is deleted while it is written --------------------------------------
async def test_s20u_a_reply_of_a_deleted_chat_is_counted_in_metrics_as_in_usage(
    world: World,
) -> None:
    w = world
    gate = asyncio.Event()
    w.openai.script(
        Reply(chunks=openai_usage_stream(prompt=200, completion=20), gate=gate, gate_after=2)
    )
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)

    started = await w.chat.start(w.auth, model=w.gpt, message=question())
    head = await w.chat.events(started["sessionId"], limit=1)
    deleted = await w.client.delete(f"/api/chats/{started['chatId']}", headers=w.auth)
    assert deleted.status_code == 204, deleted.text
    gate.set()
    events = await asyncio.wait_for(
        w.chat.events(started["sessionId"], last_event_id=head[-1][0]), 20
    )

    assert events[-1][1] == "error"
    assert events[-1][2]["code"] == "chat_deleted"
    used = delta(await usage_of(w, w.gpt), before_usage)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (1, 200, 20)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    # counted as what it is (s23): its tokens as usage, its request as a deleted chat's
    assert counted == Counters(200, 20, {"chat_deleted": 1})


# --- 11. a stop racing the reply's end ------------------------------------------------------
async def test_s20u_a_stop_racing_the_end_of_a_reply_counts_it_once(world: World) -> None:
    w = world
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)
    rounds = 4
    dones = []
    for n in range(rounds):
        gate = asyncio.Event()
        pieces = openai_usage_stream(("One", " two"), prompt=50, completion=5)
        w.openai.script(Reply(chunks=pieces, gate=gate, gate_after=3))  # the last token held
        started = await w.chat.start(w.auth, model=w.gpt, message=question())
        head = await w.chat.events(started["sessionId"], limit=2)
        stop = w.client.post(f"/api/chat/sessions/{started['sessionId']}/stop", headers=w.auth)
        if n % 2:
            gate.set()
            await stop
        else:
            await stop
            gate.set()
        events = await asyncio.wait_for(
            w.chat.events(started["sessionId"], last_event_id=head[-1][0]), 20
        )
        done = done_of(events)
        stored = await stored_reply(w, started["chatId"])
        assert done["status"] == stored["status"]
        assert done["usage"]["promptTokens"] == stored["usage"]["promptTokens"]
        assert done["costUsd"] == pytest.approx(stored["costUsd"], rel=1e-9)
        dones.append(done)

    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    assert used["requests"] == rounds
    assert used["promptTokens"] == sum(d["usage"]["promptTokens"] for d in dones)
    assert used["completionTokens"] == sum(d["usage"]["completionTokens"] for d in dones)
    assert used["costUsd"] == pytest.approx(sum(d["costUsd"] for d in dones), abs=1e-6)
    assert sum(counted.requests.values()) == rounds
    assert counted.prompt == used["promptTokens"]


# --- 12. Claude's counts of a reply served again from Whalli's cache --------------------------
async def test_s20u_a_whalli_cache_hit_reports_no_provider_cache_write(world: World) -> None:
    w = world
    w.anthropic.script(Reply(chunks=claude_usage_stream(fresh=100, written=2000, completion=9)))
    before_usage = await usage_of(w, w.claude)
    asked = question()

    await turn(w, model=w.claude, message=asked)
    second_start, second_events = await turn(w, model=w.claude, message=asked)

    second = done_of(second_events)
    stored = await stored_reply(w, second_start["chatId"])
    used = delta(await usage_of(w, w.claude), before_usage)
    assert len(w.anthropic.requests) == 1
    assert (second["cached"], second["costUsd"]) == (True, 0)
    assert (used["requests"], used["cachedRequests"]) == (2, 1)
    assert used["costUsd"] == pytest.approx(claude_cost(100, 0, 2000, 9), abs=1e-6)
    # one call wrote 2,000 tokens to Claude's cache; the hit made no call
    assert used["cacheWriteTokens"] == 2000
    assert stored["usage"]["cacheWriteTokens"] == 0


# --- 13. a Claude reply cut after it said its output count ------------------------------------
async def test_s20u_a_claude_reply_cut_after_its_output_count_is_charged_that_count(
    world: World,
) -> None:
    w = world
    pieces = claude_usage_stream(fresh=50, completion=500)[:-1]  # no message_stop
    w.anthropic.script(Reply(chunks=pieces, abort=True))
    before_usage = await usage_of(w, w.claude)

    started, _events = await turn(w, model=w.claude, message=question())

    stored = await stored_reply(w, started["chatId"])
    used = delta(await usage_of(w, w.claude), before_usage)
    assert stored["content"] == "Hello, world!"
    assert (stored["usage"]["promptTokens"], used["promptTokens"]) == (50, 50)
    assert (stored["usage"]["completionTokens"], used["completionTokens"]) == (500, 500)
    assert stored["costUsd"] == pytest.approx(claude_cost(50, 0, 0, 500), rel=1e-6)


async def test_s20u_an_openai_reply_cut_after_its_usage_chunk_is_charged_that_usage(
    world: World,
) -> None:
    w = world
    pieces = openai_usage_stream(prompt=60, completion=500)[:-1]  # no [DONE]
    w.openai.script(Reply(chunks=pieces, abort=True))
    before_usage = await usage_of(w, w.gpt)

    started, _events = await turn(w, model=w.gpt, message=question())

    stored = await stored_reply(w, started["chatId"])
    used = delta(await usage_of(w, w.gpt), before_usage)
    assert stored["content"] == "Hello, world!"
    assert (stored["usage"]["promptTokens"], used["promptTokens"]) == (60, 60)
    assert (stored["usage"]["completionTokens"], used["completionTokens"]) == (500, 500)
    assert stored["costUsd"] == pytest.approx(gpt_cost(60, 500), rel=1e-6)


# --- 14. the automatic title's call ---------------------------------------------------------
@asynccontextmanager
async def _titled_world(stack_urls: StackUrls, unique: str, tmp_path: Path) -> AsyncIterator[World]:
    queue = f"hunt-s20u-{unique}"
    try:
        async with _world(
            stack_urls, unique, tmp_path, WHALLI_CHAT_TITLES="model", WHALLI_QUEUE_NAME=queue
        ) as w:
            yield w
    finally:
        async with Redis.from_url(stack_urls.redis_url) as client:
            async for key in client.scan_iter(match=f"{queue}:*"):
                await client.delete(key)


async def _title(w: World, chat_id: str) -> None:
    handler = await resolved(w.chat.world.container.services.title_chat())
    await handler.execute(TitleChat(chat_id=uuid.UUID(chat_id), expected_title=None))


async def test_s20u_a_title_call_failing_mid_answer_still_records_its_usage(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    async with _titled_world(stack_urls, unique, tmp_path) as w:
        started, _ = await turn(w, model=w.gpt, message=question())
        before_usage = await usage_of(w, w.gpt)
        cut = openai_stream(("Usage", " of"), usage=None, done=False)[:3]
        w.openai.script(Reply(chunks=cut, abort=True))
        await _title(w, started["chatId"])
        used = delta(await usage_of(w, w.gpt), before_usage)

    assert "Write a title" in json.dumps(w.openai.requests[-1].body)
    assert used["requests"] == 1
    assert used["promptTokens"] > 0
    assert used["completionTokens"] > 0


async def test_s20u_a_title_calls_tokens_are_counted_in_metrics_as_in_usage(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    async with _titled_world(stack_urls, unique, tmp_path) as w:
        started, _ = await turn(w, model=w.gpt, message=question())
        before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)
        w.openai.script(Reply(chunks=openai_usage_stream(("A title",), prompt=70, completion=3)))
        await _title(w, started["chatId"])
        used = delta(await usage_of(w, w.gpt), before_usage)
        counted = (await counters(w, w.gpt)).minus(before_metrics)

    assert "Write a title" in json.dumps(w.openai.requests[-1].body)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (1, 70, 3)
    assert (counted.prompt, counted.completion) == (70, 3)


# --- 15. every provider failing before the first token: chat and /v1 --------------------------
async def test_s20u_a_chat_reply_no_provider_could_start_is_counted_as_failed(
    world: World,
) -> None:
    w = world
    overloaded = Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded"))
    down = Reply(status=503, body=openai_error("Unavailable.", "server_error", "server_error"))
    w.anthropic.script(overloaded, overloaded)
    w.openai.script(down, down)
    before_usage, before_metrics = await usage_of(w, w.claude), await counters(w, w.claude)

    started, events = await turn(w, model=w.claude, message=question())

    assert events[-1][1] == "error"
    stored = await stored_reply(w, started["chatId"])
    used = delta(await usage_of(w, w.claude), before_usage)
    assert (stored["status"], stored["costUsd"], stored["usage"]["promptTokens"]) == (
        "failed", 0, 0,
    )  # fmt: skip
    assert (used["requests"], used["promptTokens"], used["costUsd"]) == (1, 0, 0)
    assert (await counters(w, w.claude)).minus(before_metrics) == Counters(0, 0, {"failed": 1})


async def test_s20u_a_v1_completion_no_provider_could_start_is_counted_as_a_chat_reply_is(
    world: World,
) -> None:
    w = world
    overloaded = Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded"))
    down = Reply(status=503, body=openai_error("Unavailable.", "server_error", "server_error"))
    w.anthropic.script(overloaded, overloaded)
    w.openai.script(down, down)
    before_usage, before_metrics = await usage_of(w, w.claude), await counters(w, w.claude)

    answer = await w.client.post(
        "/v1/chat/completions", headers=w.v1,
        json={"model": w.claude, "messages": [{"role": "user", "content": question()}]},
    )  # fmt: skip

    assert answer.status_code >= 500, answer.text
    assert len(w.anthropic.requests) == 2
    assert len(w.openai.requests) == 2
    used = delta(await usage_of(w, w.claude), before_usage)
    counted = (await counters(w, w.claude)).minus(before_metrics)
    assert counted == Counters(0, 0, {"failed": 1})
    assert used["requests"] == 1


# --- 16. a /v1 client leaving while the final usage record is being written -------------------
async def test_s20u_v1_a_client_leaving_during_the_final_usage_write_is_still_counted(
    world: World, migrated_database_url: str
) -> None:
    w = world
    w.openai.script(Reply(chunks=openai_usage_stream(prompt=25, completion=5)))
    before_usage, before_metrics = await usage_of(w, w.gpt), await counters(w, w.gpt)
    body = {"model": w.gpt, "messages": [{"role": "user", "content": question()}],
            "stream": True}  # fmt: skip

    # The user's row locked: a usage record of theirs (its foreign key) waits for the lock,
    # as an insert waits on a slow or failing-over database
    async with (
        await psycopg.AsyncConnection.connect(migrated_database_url) as blocker,
        blocker.transaction(),
    ):
        await blocker.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (w.user_id,))
        text = ""
        async with w.client.stream(
            "POST", "/v1/chat/completions", json=body, headers=w.v1
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    choices = json.loads(line.removeprefix("data: "))["choices"]
                    text += "".join(c["delta"].get("content") or "" for c in choices)
                if text == "Hello, world!":
                    break  # the whole answer read: the client leaves
        await asyncio.sleep(1.0)  # the server notices the client left (a sync point)
    for _ in range(60):
        used = delta(await usage_of(w, w.gpt), before_usage)
        if used["requests"]:
            break
        await asyncio.sleep(0.05)

    used = delta(await usage_of(w, w.gpt), before_usage)
    counted = (await counters(w, w.gpt)).minus(before_metrics)
    assert used["requests"] == 1
    assert (used["promptTokens"], used["completionTokens"]) == (25, 5)
    assert sum(counted.requests.values()) == 1


async def test_s20u_v1_a_client_staying_through_a_slow_usage_write_is_counted_once(
    world: World, migrated_database_url: str
) -> None:
    """The control of the test above: the same held write, the client reading to the end."""
    w = world
    w.openai.script(Reply(chunks=openai_usage_stream(prompt=25, completion=5)))
    before_usage = await usage_of(w, w.gpt)
    body = {"model": w.gpt, "messages": [{"role": "user", "content": question()}],
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip

    async with (
        await psycopg.AsyncConnection.connect(migrated_database_url) as blocker,
        blocker.transaction(),
    ):
        await blocker.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (w.user_id,))
        reading = asyncio.ensure_future(v1_sse(w, body))
        await asyncio.sleep(1.0)
        assert not reading.done()  # the last chunk waits for the usage record
    chunks = await asyncio.wait_for(reading, 20)

    assert chunks[-1]["usage"]["prompt_tokens"] == 25
    used = delta(await usage_of(w, w.gpt), before_usage)
    assert (used["requests"], used["promptTokens"], used["completionTokens"]) == (1, 25, 5)
