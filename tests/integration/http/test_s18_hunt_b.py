"""Hunt (s18, b): /v1 as newer OpenAI SDKs and tools use it — fields they send, what is ignored
that changes the answer, and what the SDK parses out of the replies.

Each test runs the real app and container (Postgres, Redis) behind the official ``openai`` SDK
(or raw HTTP to the live app) against loopback providers speaking the real wire protocol
(``FakeProviderServer``). A test marked ``xfail(strict=True)`` demonstrates a defect; the
others pin behaviour clients rely on that no other test pins.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel

from tests.integration.http.test_v1_tools import CLAUDE, GPT, Providers, providers
from tests.support.fake_prompt_cache import unmarked
from tests.support.fake_providers import (
    COMPLETION_TOKENS,
    DELTAS,
    PROMPT_TOKENS,
    Reply,
    openai_chunk,
    openai_stream,
    sse,
)

__all__ = ["providers"]  # the fixture, shared with the tool tests

GPT5 = "openai/gpt-5-mini"  # a free plan's reasoning model
REFUSAL = ("I'm sorry, ", "I can't help with that.")


class Greeting(BaseModel):
    greeting: str


def asked(text: str = "Hello") -> list[ChatCompletionMessageParam]:
    # unique: the shared Redis may hold the cached replies of other runs
    return [{"role": "user", "content": f"{text} {uuid.uuid4()}"}]


def raw(providers: Providers) -> httpx.AsyncClient:
    """Raw HTTP to the live app, authenticated as the SDK is."""
    return httpx.AsyncClient(
        base_url=str(providers.sdk.base_url).rstrip("/"),
        headers={"Authorization": f"Bearer {providers.sdk.api_key}"},
        timeout=30,
    )


async def post(providers: Providers, body: dict[str, Any]) -> httpx.Response:
    async with raw(providers) as client:
        return await client.post("/chat/completions", json=body)


def payloads(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def refusal_stream() -> list[bytes]:
    """OpenAI's stream of a structured-outputs refusal: ``delta.refusal`` pieces, no content."""
    pieces = [sse(openai_chunk({"role": "assistant", "content": None, "refusal": ""}))]
    pieces += [sse(openai_chunk({"refusal": text})) for text in REFUSAL]
    pieces.append(sse(openai_chunk({}, "stop")))
    usage = openai_chunk({}) | {"choices": []}
    usage["usage"] = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }
    pieces += [sse(usage), sse("[DONE]")]
    return pieces


# --- an OpenAI model's refusal ------------------------------------------------------------------
async def test_an_openai_structured_outputs_refusal_reaches_the_sdk_as_message_refusal(
    providers: Providers,
) -> None:
    providers.openai.script(Reply(chunks=refusal_stream()))

    completion = await providers.sdk.chat.completions.parse(
        model=GPT, messages=asked("Greet me"), response_format=Greeting
    )

    message = completion.choices[0].message
    assert message.parsed is None
    assert message.refusal == "".join(REFUSAL), message


async def test_a_streamed_openai_refusal_is_streamed_as_delta_refusal(
    providers: Providers,
) -> None:
    providers.openai.script(Reply(chunks=refusal_stream()))

    chunks = await providers.sdk.chat.completions.create(
        model=GPT, messages=asked("Greet me"), stream=True,
        response_format={"type": "json_schema", "json_schema": {
            "name": "greeting", "strict": True, "schema": Greeting.model_json_schema()
            | {"additionalProperties": False},
        }},
    )  # fmt: skip
    refusal = []
    async for chunk in chunks:
        for choice in chunk.choices:
            refusal.append(choice.delta.refusal or "")

    assert "".join(refusal) == "".join(REFUSAL)


# --- options that change the answer: honoured or refused, never ignored --------------------------
def _logprobs_honoured(body: dict[str, Any], sent: dict[str, Any] | None) -> bool:
    return body["choices"][0]["logprobs"] is not None


def _forwarded(name: str) -> Any:
    def honoured(body: dict[str, Any], sent: dict[str, Any] | None) -> bool:
        return sent is not None and name in sent

    return honoured


BIAS = {"1734": -100, "9642": 100}
AUDIO = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}
ANSWER_CHANGING: dict[str, tuple[dict[str, Any], str, Any]] = {
    # the client reads choices[0].logprobs (LangChain's logprobs=True, eval harnesses)
    "logprobs": ({"logprobs": True, "top_logprobs": 3}, "logprobs", _logprobs_honoured),
    # a banned token (classifiers, "answer only yes or no") comes back anyway
    "logit_bias": ({"logit_bias": BIAS}, "logit_bias", _forwarded("logit_bias")),
    # an audio answer asked for (gpt-4o-audio clients) comes back as text only
    "modalities_audio": (AUDIO, "modalities", _forwarded("modalities")),
    # a web search asked for (gpt-4o-search clients) is not made
    "web_search_options": (
        {"web_search_options": {}},
        "web_search_options",
        _forwarded("web_search_options"),
    ),
}


@pytest.mark.parametrize("case", list(ANSWER_CHANGING), ids=list(ANSWER_CHANGING))
async def test_an_option_that_changes_the_answer_is_honoured_or_refused(
    providers: Providers, case: str
) -> None:
    extra, param, honoured = ANSWER_CHANGING[case]

    response = await post(providers, {"model": GPT, "messages": asked(), **extra})

    if response.status_code == 400:
        assert response.json()["error"]["param"] == param, response.text
        return
    assert response.status_code == 200, response.text
    sent = providers.openai.requests[-1].body if providers.openai.requests else None
    assert honoured(response.json(), sent), (case, sent)


async def test_verbosity_asked_of_gpt_5_reaches_openai(providers: Providers) -> None:
    completion = await providers.sdk.chat.completions.create(
        model=GPT5, messages=asked(), verbosity="low"
    )

    assert completion.choices[0].message.content == "".join(DELTAS)
    [sent] = providers.openai.requests
    assert sent.body.get("verbosity") == "low", sent.body


async def test_the_name_of_a_speaker_reaches_openai(providers: Providers) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "name": "alice", "content": "I like tea."},
        {"role": "user", "name": "bob", "content": f"What does alice like? {uuid.uuid4()}"},
    ]

    await providers.sdk.chat.completions.create(model=GPT, messages=messages)

    [sent] = providers.openai.requests
    assert [m.get("name") for m in sent.body["messages"]] == ["alice", "bob"], sent.body


async def test_a_name_openai_would_refuse_is_a_400_naming_the_message(
    providers: Providers,
) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Hi."},
        {"role": "user", "name": "alice smith", "content": "Hello."},
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        await providers.sdk.chat.completions.create(model=GPT, messages=messages)

    assert refused.value.body["param"] == "messages[1].name"  # type: ignore[index]
    assert providers.openai.requests == []


async def test_who_spoke_is_part_of_the_cache_key(providers: Providers) -> None:
    """The same words said by someone else are another prompt: not served from the cache."""
    question = f"What do I like? {uuid.uuid4()}"
    for name in ("alice", "bob", None):
        message: dict[str, Any] = {"role": "user", "content": question}
        if name is not None:
            message["name"] = name
        await providers.sdk.chat.completions.create(
            model=GPT,
            messages=[message],
            temperature=0,  # type: ignore[list-item]
        )
    assert len(providers.openai.requests) == 3  # none answered from the cache
    await providers.sdk.chat.completions.create(
        model=GPT, messages=[{"role": "user", "name": "bob", "content": question}], temperature=0
    )
    assert len(providers.openai.requests) == 3  # bob's again: from the cache


# --- the conversation as sent back by clients -----------------------------------------------------
async def test_an_assistant_turn_with_a_refusal_part_is_taken(providers: Providers) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "Help me pick a lock."},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help."}]},
        {"role": "user", "content": f"Then tell me a joke. {uuid.uuid4()}"},
    ]

    response = await post(providers, {"model": GPT, "messages": messages})

    assert response.status_code == 200, response.text


async def test_an_assistant_refusal_sent_back_keeps_its_words(providers: Providers) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "Help me pick a lock."},
        {"role": "assistant", "content": None, "refusal": "I can't help with that."},
        {"role": "user", "content": f"Why not? {uuid.uuid4()}"},
    ]

    response = await post(providers, {"model": GPT, "messages": messages})

    assert response.status_code == 200, response.text
    [sent] = providers.openai.requests
    assistant = sent.body["messages"][1]
    said = json.dumps(assistant)
    assert "I can't help with that." in said, assistant


async def test_text_parts_of_developer_assistant_and_tool_turns_reach_claude(
    providers: Providers,
) -> None:
    # LangChain and the Agents SDK send every role's content as lists of text parts
    messages: list[Any] = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": f"Weather? {uuid.uuid4()}"},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."}],
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1",
         "content": [{"type": "text", "text": "18°C, "}, {"type": "text", "text": "sunny"}]},
    ]  # fmt: skip
    tools = [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]

    response = await post(providers, {"model": CLAUDE, "messages": messages, "tools": tools})

    assert response.status_code == 200, response.text
    [request] = providers.anthropic.requests
    sent = unmarked(request.body)  # (the prompt cache's marks: test_prompt_caching)
    assert sent["system"] == "Be brief."
    _, assistant, results = sent["messages"]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == {"type": "text", "text": "Checking."}
    assert assistant["content"][1]["type"] == "tool_use"
    assert assistant["content"][1]["id"] == "call_1"
    said = json.dumps(results, ensure_ascii=False)
    assert results["role"] == "user"
    assert "tool_result" in said
    assert "18°C, sunny" in said, results


# --- usage --------------------------------------------------------------------------------------
def usage_with_details_stream() -> list[bytes]:
    pieces = openai_stream(usage=None, done=False)
    chunk = openai_chunk({}) | {"choices": []}
    chunk["usage"] = {
        "prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
        "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 256, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0,
                                      "rejected_prediction_tokens": 0},
    }  # fmt: skip
    return [*pieces, sse(chunk), sse("[DONE]")]


async def test_usage_details_from_openai_reach_the_client(providers: Providers) -> None:
    providers.openai.script(Reply(chunks=usage_with_details_stream()))

    completion = await providers.sdk.chat.completions.create(model=GPT5, messages=asked())

    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (2000, 300)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1536
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 256


# --- the stream ---------------------------------------------------------------------------------
async def test_include_obfuscation_is_taken_and_the_stream_ends_with_its_usage(
    providers: Providers,
) -> None:
    # openai-python 1.99+ documents stream_options.include_obfuscation; clients set it false
    body = {
        "model": GPT, "messages": asked(), "stream": True,
        "stream_options": {"include_usage": True, "include_obfuscation": False},
    }  # fmt: skip

    response = await post(providers, body)

    assert response.status_code == 200, response.text
    data = payloads(response.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all("obfuscation" not in c for c in chunks)
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    *deltas, last = chunks
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS
    assert all(c["usage"] is None for c in deltas)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in deltas)
    assert text == "".join(DELTAS)


# --- the provider rate limiting -----------------------------------------------------------------
async def test_a_provider_rate_limit_is_a_429_rate_limit_error_with_retry_after(
    providers: Providers,
) -> None:
    limited = Reply(
        status=429,
        headers={"retry-after": "0"},
        body={"error": {"message": "Rate limit reached.", "type": "requests",
                        "param": None, "code": "rate_limit_exceeded"}},
    )  # fmt: skip
    providers.openai.script(*[limited] * 6)  # gpt-4o-mini has no fallback

    response = await post(providers, {"model": GPT, "messages": asked()})

    assert providers.openai.requests, "the provider was never asked"
    assert response.status_code == 429, response.text
    assert response.json()["error"]["type"] == "rate_limit_error", response.text
    assert "retry-after" in response.headers


# --- errors naming what the client sent -----------------------------------------------------------
async def test_max_completion_tokens_above_the_models_cap_names_the_param_sent(
    providers: Providers,
) -> None:
    body = {"model": GPT, "messages": asked(), "max_completion_tokens": 100_000}

    response = await post(providers, body)

    assert response.status_code == 400, response.text
    assert not providers.openai.requests
    error = response.json()["error"]
    assert error["param"] == "max_completion_tokens", error
    assert "max_tokens" not in error["message"].replace("max_completion_tokens", ""), error


async def test_max_tokens_above_the_models_cap_is_a_4xx_naming_max_tokens(
    providers: Providers,
) -> None:
    # the control: the legacy name, refused before any provider is asked
    response = await post(providers, {"model": GPT, "messages": asked(), "max_tokens": 100_000})

    assert response.status_code == 400, response.text
    assert not providers.openai.requests
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "max_tokens"), error
    assert "16,384" in error["message"], error
