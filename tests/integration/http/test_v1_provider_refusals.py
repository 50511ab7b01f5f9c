"""A request the provider refuses as invalid (its 400), through /v1 with the official ``openai``
SDK → Whalli's real app and container (Postgres, Redis) → a loopback provider: the caller's
400 in OpenAI's shape (``invalid_request_error``) with the provider's own explanation, streamed
or not (the refusal comes before the first chunk), never retried, no fallback answering."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.http.test_v1_tools import CLAUDE, GPT, Providers, providers
from tests.support.fake_providers import (
    Reply,
    anthropic_error,
    anthropic_error_event,
    anthropic_stream,
    openai_error,
    openai_stream,
    sse,
)

__all__ = ["providers"]  # the fixture, shared with the tool tests

CONTEXT = (
    "This model's maximum context length is 128000 tokens. However, your messages resulted "
    "in 130512 tokens. Please reduce the length of the messages."
)
TOO_LONG = "prompt is too long: 210000 tokens > 200000 maximum"


def asked() -> list[ChatCompletionMessageParam]:
    # unique: the shared Redis may hold the cached replies of other runs
    return [{"role": "user", "content": f"A very long question {uuid.uuid4()}"}]


def refused_by(providers: Providers, model: str) -> str:
    """Script the model's provider to refuse the next request; the message it gives."""
    if model == GPT:
        body = openai_error(CONTEXT, "context_length_exceeded")
        providers.openai.script(Reply(status=400, body=body))
        return CONTEXT
    providers.anthropic.script(
        Reply(status=400, body=anthropic_error("invalid_request_error", TOO_LONG))
    )
    return TOO_LONG


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", [GPT, CLAUDE])
async def test_a_request_the_provider_refuses_is_a_400_with_its_explanation(
    providers: Providers, model: str, stream: bool
) -> None:
    said = refused_by(providers, model)

    # streamed, the SDK raises at once too: the status comes before any chunk
    with pytest.raises(openai.BadRequestError, match="rejected the request") as raised:
        await providers.sdk.chat.completions.create(model=model, messages=asked(), stream=stream)

    body = raised.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["code"]) == ("invalid_request_error", "provider_rejected_request")
    assert said in body["message"]
    assert "rejected the request (HTTP 400" in body["message"]
    upstream, other = (
        (providers.openai, providers.anthropic)
        if model == GPT
        else (providers.anthropic, providers.openai)
    )
    assert len(upstream.requests) == 1  # not retried
    assert other.requests == []  # no fallback answered it


async def test_a_streamed_refusal_is_a_plain_json_400_not_a_stream(providers: Providers) -> None:
    said = refused_by(providers, CLAUDE)
    base_url = f"{providers.sdk.base_url}".rstrip("/")
    request: dict[str, Any] = {"model": CLAUDE, "messages": asked(), "stream": True}

    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base_url}/chat/completions",
            json=request,
            headers={"Authorization": f"Bearer {providers.sdk.api_key}"},
        )

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert said in response.json()["error"]["message"]
    assert "data:" not in response.text


@pytest.mark.parametrize("model", [GPT, CLAUDE])
async def test_an_error_mid_stream_ends_the_stream_with_the_providers_message(
    providers: Providers, model: str
) -> None:
    if model == GPT:
        error = openai_error("The server had an error while processing your request.",
                             "server_error", "server_error")  # fmt: skip
        providers.openai.script(Reply(chunks=[*openai_stream()[:3], sse(error)]))
        said = "(server_error): The server had an error while processing your request."
    else:
        providers.anthropic.script(Reply(chunks=[*anthropic_stream()[:5], anthropic_error_event()]))
        said = "(overloaded_error): Overloaded"
    stream = await providers.sdk.chat.completions.create(model=model, messages=asked(), stream=True)
    received: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError, match="mid-stream") as raised:
        await read()

    assert "".join(received) == "Hello, "
    assert raised.value.message.endswith(f"reported an error mid-stream {said}")
