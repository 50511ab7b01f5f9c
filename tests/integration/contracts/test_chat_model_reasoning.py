"""Reasoning models through the adapters, against loopback providers speaking their wire
formats: the effort asked for goes out in each provider's terms, and the model's streamed
thinking comes back as ``StreamReasoning``, apart from (and before) the answer's text."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.contracts.test_chat_model import FAST, REQUEST, collect, text_of
from tests.support.fake_providers import (
    API_KEY,
    DELTAS,
    FakeProviderServer,
    Reply,
    openai_default,
)
from tests.support.fake_reasoning import THOUGHTS, openai_reasoning_stream
from whalli.adapters.ai.openai import OpenAIChatModel
from whalli.adapters.outbound_http import new_http_client
from whalli.domain.model.chats import GenerationParams, ReasoningEffort
from whalli.ports.chat_model import (
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamReasoning,
)


@pytest.fixture
async def http() -> httpx.AsyncClient:
    return new_http_client(timeout=5.0, max_connections=10, max_keepalive_connections=5)


def kinds(events: list[StreamEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_an_openai_compatible_servers_reasoning_streams_before_the_text(
    http: httpx.AsyncClient, field: str
) -> None:
    async with FakeProviderServer(openai_default()) as server:
        server.script(Reply(chunks=openai_reasoning_stream(field=field)))
        model = OpenAIChatModel(http, base_url=server.url, api_key=API_KEY, policy=FAST)
        events = await collect(model.stream(REQUEST))
    await http.aclose()

    assert [e.text for e in events if isinstance(e, StreamReasoning)] == list(THOUGHTS)
    assert text_of(events) == "".join(DELTAS)
    assert kinds(events) == ["StreamReasoning"] * len(THOUGHTS) + ["StreamDelta"] * len(DELTAS) + [
        "StreamEnd"
    ]
    assert isinstance(events[-1], StreamEnd)
    assert all(not isinstance(e, StreamDelta) or e.text for e in events)


@pytest.mark.parametrize("provider", ["openai", "xai", "openai-compatible"])
async def test_a_reasoning_effort_is_sent_as_reasoning_effort(
    http: httpx.AsyncClient, provider: str
) -> None:
    request = CompletionRequest(
        model="o4-mini", messages=REQUEST.messages,
        params=GenerationParams(reasoning_effort=ReasoningEffort.HIGH),
    )  # fmt: skip
    async with FakeProviderServer(openai_default()) as server:
        model = OpenAIChatModel(
            http, base_url=server.url, api_key=API_KEY, policy=FAST,
            provider=provider,  # type: ignore[arg-type]
        )  # fmt: skip
        await collect(model.stream(request))
        await collect(model.stream(REQUEST))
    await http.aclose()

    asked, plain = (r.body for r in server.requests)
    assert asked["reasoning_effort"] == "high"
    assert "reasoning_effort" not in plain
