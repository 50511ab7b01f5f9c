"""Bug hunt (s23) on the OpenAI-compatible API: ``POST /v1/chat/completions`` (streamed and not),
``GET /v1/models`` and ``GET /v1/models/{id}``, judged against what OpenAI's API does and what
the official ``openai`` SDK and common clients send and expect.

The real app and container (embedded Postgres, Redis, S3) under uvicorn on loopback, a fake
OpenAI provider speaking OpenAI's wire protocol behind Whalli, the official SDK or raw HTTP
(where the wire itself is under test). Tests marked ``xfail(strict=True)`` assert the correct
behaviour of a defect found; the others pin behaviour that is right and was not yet tested.
"""

from __future__ import annotations

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
from tests.support.fake_providers import API_KEY, FakeProviderServer, openai_default
from tests.support.live_server import live_server
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.entrypoints.http.asgi import build_app

GPT = "openai/gpt-4o-mini"


@dataclass
class V1:
    provider: FakeProviderServer
    http: httpx.AsyncClient
    sdk: openai.AsyncOpenAI
    secret: str

    async def post(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.http.post(
            "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {self.secret}", **headers},
        )

    async def post_raw(self, content: bytes) -> httpx.Response:
        return await self.http.post(
            "/v1/chat/completions",
            content=content,
            headers={"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"},
        )

    def calls(self) -> int:
        return len(self.provider.requests)


@pytest.fixture
async def v1(stack_urls: StackUrls, migrated_database_url: str, unique: str) -> AsyncIterator[V1]:
    async with FakeProviderServer(openai_default()) as provider:
        settings = _settings(
            stack_urls, unique, WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=provider.url
        )
        container = build_container(settings)
        async with live_server(build_app(settings, container)) as client:
            secret, _ = await _api_key(client)
            base_url = f"{client.base_url}".rstrip("/") + "/v1"
            sdk = openai.AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0)
            async with sdk:
                yield V1(provider, client, sdk, secret)


def asked() -> list[dict[str, Any]]:
    # unique: the shared Redis may hold the cached replies of other runs
    return [{"role": "user", "content": f"Hello {uuid.uuid4()}"}]


def openai_error(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert error["message"], error
    return dict(error)


def chunks_of(response: httpx.Response) -> list[dict[str, Any]]:
    payloads = [line[len("data: ") :] for line in response.text.splitlines()]
    return [json.loads(p) for p in payloads if p and p != "[DONE]" and p[0] == "{"]


# --- defects ------------------------------------------------------------------------------------
async def test_a_function_call_forcing_a_function_is_refused_not_ignored(v1: V1) -> None:
    # The deprecated pair: `functions` is refused (400 naming it); its partner `function_call`
    # naming a function asks for a forced call of it, which Whalli cannot give. OpenAI answers
    # 400 ("'function_call' is only allowed when 'functions' are specified"); Whalli answers
    # plain text as if nothing had been asked, against its own "never silently ignored".
    before = v1.calls()

    response = await v1.post(
        {"model": GPT, "messages": asked(), "function_call": {"name": "get_weather"}}
    )

    error = openai_error(response, 400)
    assert error["param"] == "function_call", error
    assert error["type"] == "invalid_request_error"
    assert v1.calls() == before  # never reached the provider


async def test_max_tokens_and_max_completion_tokens_together_are_refused(v1: V1) -> None:
    # OpenAI: 400 invalid_parameter_combination, "Setting 'max_tokens' and
    # 'max_completion_tokens' at the same time is not supported." Whalli silently keeps
    # max_tokens (the deprecated one) and drops max_completion_tokens (the one OpenAI's own
    # reasoning models honour): the client's cap of 10 becomes 5 without a word.
    before = v1.calls()

    response = await v1.post(
        {"model": GPT, "messages": asked(), "max_tokens": 5, "max_completion_tokens": 10}
    )

    error = openai_error(response, 400)
    assert error["param"] in ("max_tokens", "max_completion_tokens"), error
    assert v1.calls() == before


@pytest.mark.parametrize("body", [b"[]", b'"hello"', b"42"], ids=["array", "string", "number"])
async def test_a_body_that_is_not_an_object_names_no_made_up_param(v1: V1, body: bytes) -> None:
    # `data` is Litestar's name for the handler's body argument, not a field of OpenAI's API
    # (the missing-body case was fixed in s21 to stop saying 'data'; a body of the wrong type
    # still does). OpenAI names no param for a body that is not an object.
    response = await v1.post_raw(body)

    error = openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] != "data", error
    assert "object" in error["message"], error


# --- regression tests: behaviour that is right ------------------------------------------------
async def test_sampling_parameters_reach_the_provider_and_client_only_fields_do_not(
    v1: V1,
) -> None:
    await v1.sdk.chat.completions.create(
        model=GPT,
        messages=asked(),  # type: ignore[arg-type]
        seed=7,
        top_p=0.5,
        presence_penalty=0.25,
        frequency_penalty=-0.5,
        user="end-user-42",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        parallel_tool_calls=True,  # without tools: OpenAI would refuse it if sent on
        extra_body={"prompt_cache_key": "client-chosen"},
    )

    sent = v1.provider.requests[-1].body
    assert (sent["seed"], sent["top_p"]) == (7, 0.5)
    assert (sent["presence_penalty"], sent["frequency_penalty"]) == (0.25, -0.5)
    for private in ("user", "metadata", "store", "service_tier", "parallel_tool_calls"):
        assert private not in sent, sent
    # Whalli's own digest, never the client's value nor anything naming the user
    assert sent["prompt_cache_key"] != "client-chosen"


async def test_cache_control_no_cache_skips_whallis_cache_at_temperature_zero(v1: V1) -> None:
    body = {"model": GPT, "messages": asked(), "temperature": 0}
    before = v1.calls()

    first = await v1.post(body)
    refetched = await v1.post(body, **{"Cache-Control": "no-cache"})
    hit = await v1.post(body)

    assert [r.status_code for r in (first, refetched, hit)] == [200, 200, 200]
    assert v1.calls() == before + 2  # no-cache went to the provider; the plain repeat did not
    contents = [r.json()["choices"][0]["message"]["content"] for r in (first, refetched, hit)]
    assert len(set(contents)) == 1


async def test_cache_control_no_store_does_not_fill_whallis_cache(v1: V1) -> None:
    body = {"model": GPT, "messages": asked(), "temperature": 0}
    before = v1.calls()

    unstored = await v1.post(body, **{"Cache-Control": "no-store"})
    stored = await v1.post(body)
    hit = await v1.post(body)

    assert [r.status_code for r in (unstored, stored, hit)] == [200, 200, 200]
    assert v1.calls() == before + 2


async def test_each_cached_stream_has_its_own_id_repeated_on_every_chunk(v1: V1) -> None:
    body = {
        "model": GPT,
        "messages": asked(),
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    before = v1.calls()

    streams = [chunks_of(await v1.post(body)) for _ in range(2)]

    assert v1.calls() == before + 1  # the second from Whalli's cache
    ids = []
    for chunks in streams:
        assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
            (chunks[0]["id"], chunks[0]["created"], GPT, "chat.completion.chunk")
        }
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["total_tokens"] > 0
        ids.append(chunks[0]["id"])
    assert ids[0] != ids[1]  # a replayed reply is a new completion, not the old one's id
    texts = [
        "".join(c["choices"][0]["delta"].get("content") or "" for c in s[:-1]) for s in streams
    ]
    assert texts[0] == texts[1] == "Hello, world!"


async def test_every_listed_model_is_retrievable_and_a_percent_encoded_id_too(v1: V1) -> None:
    listed = [m.id async for m in v1.sdk.models.list()]

    for model_id in listed:
        retrieved = await v1.sdk.models.retrieve(model_id)
        assert (retrieved.id, retrieved.object) == (model_id, "model")
    encoded = await v1.http.get(
        "/v1/models/openai%2Fgpt-4o-mini", headers={"Authorization": f"Bearer {v1.secret}"}
    )
    assert encoded.status_code == 200, encoded.text
    assert encoded.json()["id"] == GPT
    with pytest.raises(openai.NotFoundError):
        await v1.sdk.models.retrieve("openai/gpt-4o")  # a pro model: not the caller's


async def test_an_api_key_in_x_api_key_works_and_two_credentials_are_an_openai_401(
    v1: V1,
) -> None:
    by_header = await v1.http.post(
        "/v1/chat/completions",
        json={"model": GPT, "messages": asked()},
        headers={"X-API-Key": v1.secret},
    )
    both = await v1.http.get(
        "/v1/models", headers={"Authorization": "Bearer whk_wrong", "X-API-Key": v1.secret}
    )

    assert by_header.status_code == 200, by_header.text
    assert by_header.json()["object"] == "chat.completion"
    error = openai_error(both, 401)
    assert error["type"] == "authentication_error"
    assert both.headers.get("www-authenticate", "").startswith("Bearer")


@pytest.mark.parametrize(
    "field",
    ["zzz_unknown", "audio", "web_search_options", "metadata"],
)
async def test_json_nested_too_deeply_is_a_400_in_openais_shape(v1: V1, field: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    head = json.dumps({"model": GPT, "messages": [{"role": "user", "content": "x"}]})
    body = head[:-1] + f', "{field}": {deep}}}'
    before = v1.calls()

    response = await v1.post_raw(body.encode())

    error = openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert v1.calls() == before
    after = await v1.post({"model": GPT, "messages": asked()})  # the server still answers
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"messages": []}, "messages"),
        ({"stop": []}, "stop"),
        ({"stop": ""}, "stop"),
        ({"n": 0}, "n"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),  # gpt-4o-mini does not reason
        ({"verbosity": "loud"}, "verbosity"),
    ],
    ids=[
        "no_messages",
        "stop_empty_list",
        "stop_empty",
        "n0",
        "required_no_tools",
        "effort",
        "verb",
    ],
)
async def test_a_request_openai_would_refuse_is_a_4xx_naming_the_param_before_the_provider(
    v1: V1, extra: dict[str, Any], param: str
) -> None:
    before = v1.calls()

    response = await v1.post({"model": GPT, "messages": asked(), **extra})

    error = openai_error(response, 400)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert v1.calls() == before


async def test_the_sdks_error_classes_match_the_statuses(v1: V1) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        await v1.sdk.chat.completions.create(model="nope/none", messages=asked())  # type: ignore[arg-type]
    assert unknown.value.code == "model_not_found"
    with pytest.raises(openai.PermissionDeniedError):  # above the plan (documented: 403)
        await v1.sdk.chat.completions.create(model="openai/gpt-4o", messages=asked())  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as bad:  # OpenAI's 400, not a 422
        await v1.sdk.chat.completions.create(model=GPT, messages=asked(), temperature=5)  # type: ignore[arg-type]
    assert bad.value.status_code == 400
    assert bad.value.code == "invalid_input"
    assert isinstance(bad.value.body, dict)
    assert bad.value.body.get("param") == "temperature"
