"""A streamed /v1 completion whose first token is slow (a reasoning model thinking) is not a
silent connection: after a heartbeat (``WHALLI_CHAT_HEARTBEAT_S``) the 200 stream opens with
SSE comments, which OpenAI's SDK ignores, until the first chunk; a refusal that comes after that
is an error chunk. Real app and container (Postgres, Redis) → a loopback provider whose first
piece waits for the test's go-ahead (no timing in the assertions)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.integration.http.test_identity_end_to_end import _settings
from tests.integration.http.test_openai_sdk_end_to_end import _api_key
from tests.support.fake_providers import (
    API_KEY,
    DELTAS,
    FakeProviderServer,
    Reply,
    openai_default,
    openai_error,
    openai_stream,
)
from tests.support.live_server import live_server
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.entrypoints.http.asgi import build_app

GPT = "openai/gpt-4o-mini"
# Each reply below waits for the test's go-ahead before its first piece, whatever this is;
# a first event in time keeping its refusal's status is test_v1_provider_refusals.py's.
HEARTBEAT_S = "0.5"


@dataclass
class V1:
    provider: FakeProviderServer
    http: httpx.AsyncClient
    sdk: openai.AsyncOpenAI
    auth: dict[str, str]


@pytest.fixture
async def v1(stack_urls: StackUrls, migrated_database_url: str, unique: str) -> AsyncIterator[V1]:
    async with FakeProviderServer(openai_default()) as provider:
        settings = _settings(
            stack_urls, unique,
            WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=provider.url,
            WHALLI_CHAT_HEARTBEAT_S=HEARTBEAT_S,
        )  # fmt: skip
        async with live_server(build_app(settings, build_container(settings))) as client:
            secret, _ = await _api_key(client)
            base_url = f"{client.base_url}".rstrip("/") + "/v1"
            async with openai.AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0) as sdk:
                yield V1(provider, client, sdk, {"Authorization": f"Bearer {secret}"})


def _request() -> dict[str, Any]:
    # unique: the shared Redis may hold the cached replies of other runs
    question = f"Think long about {uuid.uuid4()}"
    return {"model": GPT, "messages": [{"role": "user", "content": question}], "stream": True}


async def _until_comment(lines: AsyncIterator[str]) -> list[str]:
    """The lines read up to and including the first comment (a guard against a stream that
    stays silent, not a timing limit: the first comment is due after half a second)."""
    seen: list[str] = []
    async with asyncio.timeout(30):
        async for line in lines:
            seen.append(line)
            if line.startswith(":"):
                return seen
    raise AssertionError(f"the stream ended without a comment: {seen}")


def _data(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


async def test_a_slow_first_token_opens_the_stream_with_comments_then_streams_the_reply(
    v1: V1,
) -> None:
    gate = asyncio.Event()
    v1.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=0))

    async with v1.http.stream(
        "POST", "/v1/chat/completions", json=_request(), headers=v1.auth
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        before = await _until_comment(lines)
        assert _data(before) == []  # nothing but comments while the model is silent
        gate.set()
        rest = [line async for line in lines]

    data = _data(rest)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "".join(DELTAS)


async def test_the_sdk_reads_a_stream_that_began_with_comments(v1: V1) -> None:
    gate = asyncio.Event()
    v1.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=0))
    request = _request()
    async with asyncio.timeout(30):  # a guard: it returns once the comments opened the stream
        stream = await v1.sdk.chat.completions.create(
            model=GPT, messages=request["messages"], stream=True
        )
    gate.set()
    text = ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text == "".join(DELTAS)


async def test_a_refusal_after_the_stream_opened_is_an_error_chunk(v1: V1) -> None:
    gate = asyncio.Event()
    said = openai_error("This model's maximum context length is 128000 tokens.", "too_long")
    v1.provider.script(
        Reply(status=400, chunks=[json.dumps(said).encode()], gate=gate, gate_after=0)
    )

    async with v1.http.stream(
        "POST", "/v1/chat/completions", json=_request(), headers=v1.auth
    ) as response:
        assert response.status_code == 200  # already open: the refusal can only be in it
        lines = response.aiter_lines()
        await _until_comment(lines)
        gate.set()
        data = _data([line async for line in lines])

    assert "[DONE]" not in data
    errors = [json.loads(d)["error"] for d in data if "error" in json.loads(d)]
    assert len(errors) == 1
    assert errors[0]["code"] == "provider_rejected_request"
    assert len(v1.provider.requests) == 1  # a refusal is not retried


async def test_a_client_leaving_during_the_silence_closes_the_upstream_request(v1: V1) -> None:
    gate = asyncio.Event()  # never set: the model would think forever
    v1.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=0))

    async with v1.http.stream(
        "POST", "/v1/chat/completions", json=_request(), headers=v1.auth
    ) as response:
        assert response.status_code == 200
        await _until_comment(response.aiter_lines())
    # the client left; the provider's connection is closed in turn (a guard, not a timing)
    await asyncio.wait_for(v1.provider.disconnected.wait(), timeout=30)
    assert v1.provider.early_disconnects == 1
