"""/v1: OpenAI's Chat Completions and Models shapes, on the fake container's echo model."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import seed_caller
from tests.unit.http.fakes import FakeContainer
from whalli.adapters.memory.chat_model import ScriptedChatModel
from whalli.config import Settings
from whalli.domain.model.chats import GenerationParams
from whalli.domain.model.errors import ProviderError
from whalli.domain.model.users import Plan
from whalli.entrypoints.http.app import create_app

Client = AsyncTestClient[Litestar]


@pytest.fixture
async def bearer(container: FakeContainer, client: Client) -> dict[str, str]:
    caller = await seed_caller(container, client, "ada")
    return {"Authorization": f"Bearer {caller.headers['X-API-Key']}"}


def chat(content: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "dev/echo", "messages": [{"role": "user", "content": content}], **extra}


def sse_data(body: str) -> list[str]:
    """The ``data`` of each event, in order (OpenAI's streams are one data line per event)."""
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), body
    return [e.removeprefix("data: ") for e in events]


async def test_a_completion_has_openais_shape(client: Client, bearer: dict[str, str]) -> None:
    # Unknown fields (``user``) are what SDKs send: ignored, not refused.
    body = chat("Hello there, world", user="u-1", seed=7, temperature=0.5)
    response = await client.post("/v1/chat/completions", json=body, headers=bearer)

    assert response.status_code == 200, response.text
    completion = response.json()
    assert completion["id"].startswith("chatcmpl-")
    assert isinstance(completion["created"], int)
    assert (completion["object"], completion["model"]) == ("chat.completion", "dev/echo")
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there, world", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert completion["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }  # fmt: skip


async def test_text_parts_and_max_completion_tokens_are_understood(
    client: Client, bearer: dict[str, str]
) -> None:
    parts = [{"type": "text", "text": "one two "}, {"type": "text", "text": "three"}]
    body = chat(parts, max_completion_tokens=2)
    response = await client.post("/v1/chat/completions", json=body, headers=bearer)

    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("one two ", "length")


async def test_a_stream_sends_chunks_then_usage_then_done(
    client: Client, bearer: dict[str, str], container: FakeContainer
) -> None:
    body = chat("Hello there, world", stream=True, stream_options={"include_usage": True})
    response = await client.post("/v1/chat/completions", json=body, headers=bearer)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    *data, done = sse_data(response.text)
    assert done == "[DONE]"
    chunks = [json.loads(d) for d in data]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    first, *middle, last, usage = chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in middle] == ["Hello ", "there, ", "world"]
    assert all(c["choices"][0]["finish_reason"] is None and c["usage"] is None for c in middle)
    assert last["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}]
    assert usage["choices"] == []
    assert usage["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }  # fmt: skip
    [record] = container.store.tables["usage_records"].values()
    assert (record.model, record.completion_tokens, record.cached) == ("dev/echo", 3, False)


async def test_a_stream_without_include_usage_has_no_usage_field(
    client: Client, bearer: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat("Hi", stream=True), headers=bearer
    )

    *data, done = sse_data(response.text)
    assert done == "[DONE]"
    assert all("usage" not in json.loads(d) for d in data)


async def test_a_cache_hit_is_streamed_chunk_by_chunk(
    client: Client, bearer: dict[str, str], container: FakeContainer
) -> None:
    body = chat("the same question", stream=True, temperature=0)

    first = await client.post("/v1/chat/completions", json=body, headers=bearer)
    second = await client.post("/v1/chat/completions", json=body, headers=bearer)

    def contents(text: str) -> list[str]:
        chunks = [json.loads(d) for d in sse_data(text)[:-1]]
        return [c["choices"][0]["delta"].get("content") for c in chunks]

    assert contents(second.text) == contents(first.text) == ["", "the ", "same ", "question", None]
    assert container.chat_metrics.cache == {"miss": 1, "hit": 1}
    records = container.store.tables["usage_records"].values()
    assert sorted(r.cached for r in records) == [False, True]


@pytest.mark.parametrize(
    ("extra", "headers", "cached"),
    [
        ({}, {}, False),  # a sample (OpenAI's default temperature is 1): Regenerate gets a new one
        ({"temperature": 1.0}, {}, False),
        ({"temperature": 0}, {}, True),
        ({"temperature": 0}, {"Cache-Control": "no-cache"}, False),
        ({"temperature": 0, "cache": False}, {}, False),
        ({"temperature": 0}, {"Cache-Control": "max-age=0, No-Store"}, False),
        ({"temperature": 0.7, "cache": True}, {}, True),
    ],
)
async def test_the_cache_answers_v1_only_for_a_deterministic_request_or_when_asked(
    client: Client, bearer: dict[str, str], container: FakeContainer,
    extra: dict[str, Any], headers: dict[str, str], cached: bool,
) -> None:  # fmt: skip
    body = chat(f"asked twice {uuid.uuid4()}", **extra)

    for _ in range(2):
        response = await client.post(
            "/v1/chat/completions", json=body, headers={**bearer, **headers}
        )
        assert response.status_code == 200, response.text

    records = container.store.tables["usage_records"].values()
    assert sorted(r.cached for r in records) == ([False, True] if cached else [False, False])
    lookups = {"miss": 1, "hit": 1} if cached else {}
    assert container.chat_metrics.cache == lookups


async def test_an_error_after_the_first_token_ends_the_stream_with_an_error_chunk(
    client: Client, bearer: dict[str, str], container: FakeContainer
) -> None:
    container.models["dev"] = ScriptedChatModel(
        ["Hi"], provider="dev", error=ProviderError("upstream cut")
    )
    response = await client.post(
        "/v1/chat/completions", json=chat("Hi", stream=True), headers=bearer
    )

    data = sse_data(response.text)
    assert "[DONE]" not in data
    assert json.loads(data[1])["choices"][0]["delta"]["content"] == "Hi"
    assert json.loads(data[-1]) == {
        "error": {
            "message": "upstream cut", "type": "server_error", "code": "provider_error",
            "param": None,
        }
    }  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
async def test_a_reply_from_a_fallback_names_the_model_that_answered(
    client: Client, bearer: dict[str, str], container: FakeContainer, stream: bool
) -> None:
    container.models["anthropic"] = ScriptedChatModel(
        [], provider="anthropic", error=ProviderError("overloaded")
    )
    container.models["openai"] = ScriptedChatModel(["Hi"], provider="openai")
    body = {
        "model": "anthropic/claude-3-5-haiku", "stream": stream,
        "messages": [{"role": "user", "content": "Hi"}],
    }  # fmt: skip

    response = await client.post("/v1/chat/completions", json=body, headers=bearer)

    assert response.status_code == 200, response.text
    if stream:
        chunks = [json.loads(d) for d in sse_data(response.text) if d != "[DONE]"]
        assert {c["model"] for c in chunks} == {"openai/gpt-4o-mini"}
    else:
        assert response.json()["model"] == "openai/gpt-4o-mini"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_above_the_plan_is_a_403_in_openais_error_shape(
    client: Client, bearer: dict[str, str], stream: bool
) -> None:
    body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    response = await client.post(
        "/v1/chat/completions", json={**body, "stream": stream}, headers=bearer
    )

    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "model_not_in_plan")
    assert "gpt-4o" in error["message"]


async def test_unknown_models_and_disabled_providers_are_not_found(
    client: Client, bearer: dict[str, str], container: FakeContainer
) -> None:
    container.enabled_providers.discard("openai")
    for model in ("nope/none", "openai/gpt-4o-mini"):
        body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
        response = await client.post("/v1/chat/completions", json=body, headers=bearer)

        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "model_not_found")


async def test_requests_that_cannot_be_served_get_openais_error_shape(
    client: Client, bearer: dict[str, str]
) -> None:
    missing = await client.post("/v1/chat/completions", json={"model": "dev/echo"}, headers=bearer)
    images = await client.post(
        "/v1/chat/completions",
        json=chat([{"type": "image_url", "image_url": {"url": "https://x"}}]),
        headers=bearer,
    )
    # The deprecated "function" role (tool messages replaced it) is still refused.
    function = await client.post(
        "/v1/chat/completions",
        json={"model": "dev/echo", "messages": [{"role": "function", "content": "{}"}]},
        headers=bearer,
    )

    assert missing.status_code == 400, missing.text
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "messages" in missing.json()["error"]["message"]
    assert images.status_code == 400, images.text
    # an image for dev/echo, which reads none: the image is named
    assert images.json()["error"]["param"] == "messages[0].content[0]"
    assert "does not read images" in images.json()["error"]["message"]
    assert function.status_code == 400, function.text
    assert function.json()["error"]["param"] == "messages[0].role"


async def test_a_request_without_a_key_is_a_401_in_openais_error_shape(client: Client) -> None:
    response = await client.post("/v1/chat/completions", json=chat("Hi"))
    wrong = await client.get("/v1/models", headers={"Authorization": "Bearer whk_wrong"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "authentication_error"
    assert wrong.status_code == 401
    assert set(wrong.json()["error"]) == {"message", "type", "param", "code"}


async def test_models_lists_what_the_plan_and_the_enabled_providers_allow(
    client: Client, container: FakeContainer
) -> None:
    free = await seed_caller(container, client, "ada", plan=Plan.FREE)
    pro = await seed_caller(container, client, "bob", plan=Plan.PRO)
    container.enabled_providers.discard("xai")

    listed = {}
    for caller in (free, pro):
        headers = {"Authorization": f"Bearer {caller.headers['X-API-Key']}"}
        response = await client.get("/v1/models", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["object"] == "list"
        listed[caller.user.plan] = {m["id"]: m for m in response.json()["data"]}

    assert set(listed[Plan.FREE]) == {
        "openai/gpt-4o-mini", "openai/gpt-5-mini", "anthropic/claude-3-5-haiku",
        "anthropic/claude-haiku-4-5", "dev/echo",
    }  # fmt: skip
    assert {"openai/gpt-4o", "anthropic/claude-sonnet-4"} <= set(listed[Plan.PRO])
    assert not any(model_id.startswith("xai/") for model_id in listed[Plan.PRO])
    entry = listed[Plan.FREE]["dev/echo"]
    assert entry == {"id": "dev/echo", "object": "model", "created": 0, "owned_by": "dev"}


async def test_the_rate_limit_applies_and_answers_in_openais_error_shape() -> None:
    container = FakeContainer(Settings(env="test", rate_limit_user_per_min=2), [])
    async with AsyncTestClient(app=create_app(container)) as client:
        caller = await seed_caller(container, client, "ada")
        headers = {"Authorization": f"Bearer {caller.headers['X-API-Key']}"}
        allowed = [await client.get("/v1/models", headers=headers) for _ in range(2)]
        refused = await client.get("/v1/models", headers=headers)

    assert [r.status_code for r in allowed] == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.json()["error"]["code"] == "rate_limited"


@pytest.mark.parametrize("stream", [False, True])
async def test_sampling_params_reach_the_model(
    client: Client, bearer: dict[str, str], container: FakeContainer, stream: bool
) -> None:
    model = container.models["dev"] = ScriptedChatModel(["Hi"], provider="dev")
    sampling = {"top_p": 0.5, "seed": 7, "presence_penalty": 1.5, "frequency_penalty": -0.5}
    body = chat("Hi", stream=stream, stop="END", response_format={"type": "text"}, tools=[])

    response = await client.post("/v1/chat/completions", json={**body, **sampling}, headers=bearer)

    assert response.status_code == 200, response.text
    [request] = model.requests
    assert request.params == GenerationParams(
        top_p=0.5, seed=7, presence_penalty=1.5, frequency_penalty=-0.5, stop=("END",)
    )


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        # dev/echo calls no tools (tool calling itself: test_openai_tools.py)
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"functions": [{"name": "f"}]}, "functions"),  # the deprecated API: use tools
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
    ],
)
async def test_what_whalli_cannot_honour_is_refused_not_ignored(
    client: Client, bearer: dict[str, str], extra: dict[str, Any], param: str
) -> None:
    response = await client.post("/v1/chat/completions", json=chat("Hi", **extra), headers=bearer)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
