"""/v1 as real OpenAI clients use it (official SDK, LangChain, Open WebUI, LibreChat,
Continue, curl scripts from OpenAI's docs), changing only ``base_url``.

The app runs under uvicorn on loopback on the fake container (in-memory store, the network-free
``dev/echo`` model), as in test_openai_sdk.py. Each test gets a user and API key of its own, so
that the per-user rate limit (on a manual clock) never carries over between tests.

Each assertion states what a client needs. Written by a bug hunt: the tests named in the
commit that fixed them failed before (Claude answered by another model after a 400, a
fallback's cached reply named as Claude's, Regenerate replaying the cache, no
``/v1/models/{id}``, ``stream: null`` refused, problem+json on unknown /v1 routes, a refusal
as ``stop``, error params named as Whalli's fields).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.integration.http.test_identity_end_to_end import _settings
from tests.integration.http.test_openai_sdk_end_to_end import World, _api_key, world  # noqa: F401
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    RecordedRequest,
    Reply,
    anthropic_default,
    anthropic_error,
    anthropic_stream,
    openai_default,
)
from tests.support.live_server import live_server, threaded_server
from tests.unit.http.accounts import seed_api_key
from tests.unit.http.fakes import FakeContainer, FakeProbe
from whalli.adapters.embedded.stack import StackUrls
from whalli.config import Settings
from whalli.container import build_container
from whalli.entrypoints.http.app import create_app
from whalli.entrypoints.http.asgi import build_app

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello there"}]


@dataclass
class Server:
    container: FakeContainer
    loop: asyncio.AbstractEventLoop
    base_url: str  # http://127.0.0.1:port


@dataclass
class Caller:
    server: Server
    key: str
    user_id: uuid.UUID
    clients: list[openai.OpenAI] = field(default_factory=list)

    @property
    def v1(self) -> str:
        return self.server.base_url + "/v1"

    def sdk(self, api_key: str | None = None) -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.v1, api_key=api_key or self.key, max_retries=0)
        self.clients.append(client)
        return client

    def http(self, **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.server.base_url, headers={**auth, **headers}, timeout=30)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    container = FakeContainer(Settings(env="test"), [FakeProbe("postgres")])
    with threaded_server(create_app(container)) as (loop, base_url):
        yield Server(container, loop, base_url)


@pytest.fixture
def caller(server: Server) -> Iterator[Caller]:
    name = f"v1-{uuid.uuid4().hex[:12]}"  # a user (and rate budget) per test
    seeding = seed_api_key(server.container, name)
    user, secret = asyncio.run_coroutine_threadsafe(seeding, server.loop).result(timeout=30)
    caller = Caller(server, secret, user.id)
    yield caller
    for client in caller.clients:
        client.close()


def _post(caller: Caller, body: dict[str, Any], **headers: str) -> httpx.Response:
    with caller.http(**headers) as client:
        return client.post("/v1/chat/completions", json=body)


def _sse_payloads(text: str) -> list[str]:
    """The ``data:`` values of an event stream, in order."""
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def _assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    return dict(error)


# --- the non-streamed answer --------------------------------------------------------------------
def test_a_completion_has_every_field_clients_read(caller: Caller) -> None:
    response = _post(caller, {"model": "dev/echo", "messages": HELLO})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["created"] > 1_600_000_000
    assert body["model"] == "dev/echo"
    assert "system_fingerprint" in body
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert "logprobs" in choice
    assert choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Hello there"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_with_raw_response_gives_headers_and_a_request_id(caller: Caller) -> None:
    raw = caller.sdk().chat.completions.with_raw_response.create(model="dev/echo", messages=HELLO)

    assert raw.status_code == 200
    assert raw.headers.get("x-request-id")
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello there"


# --- harmless fields real clients send ----------------------------------------------------------
HARMLESS: dict[str, dict[str, Any]] = {
    "content_parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
    "developer_role": {
        "messages": [{"role": "developer", "content": "Be brief."}, *HELLO],
    },
    "name_on_messages": {
        "messages": [
            {"role": "system", "content": "Be brief.", "name": "rules"},
            {"role": "user", "content": "Hi", "name": "alice"},
        ]
    },
    "assistant_content_null": {
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": None},
            {"role": "user", "content": "two"},
        ]
    },
    "assistant_with_refusal_null_and_audio_null": {
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "ok", "refusal": None, "audio": None},
            {"role": "user", "content": "two"},
        ]
    },
    "max_completion_tokens": {"max_completion_tokens": 50},
    "n_1": {"n": 1},
    "user_very_long": {"user": "u" * 10_000},
    "metadata": {"metadata": {"session": "abc"}},
    "store_false": {"store": False},
    "logprobs_false": {"logprobs": False, "top_logprobs": None},
    "parallel_tool_calls": {"parallel_tool_calls": False},
    "tool_choice_none": {"tool_choice": "none"},
    "tools_empty_list": {"tools": []},
    "response_format_text": {"response_format": {"type": "text"}},
    "explicit_nulls": {
        "temperature": None,
        "top_p": None,
        "n": None,
        "max_tokens": None,
        "max_completion_tokens": None,
        "stop": None,
        "seed": None,
        "presence_penalty": None,
        "frequency_penalty": None,
        "stream_options": None,
        "tools": None,
        "tool_choice": None,
        "functions": None,
        "function_call": None,
        "response_format": None,
        "logit_bias": None,
        "user": None,
        "metadata": None,
        "store": None,
        "service_tier": None,
    },
    "stop_string": {"stop": "END"},
    "stop_list": {"stop": ["END", "###"]},
    "penalties_and_seed": {"presence_penalty": 0, "frequency_penalty": 0, "seed": 42},
    "logit_bias_empty": {"logit_bias": {}},
    "temperature_2": {"temperature": 2},
    # (reasoning_effort is not unknown any more: a model that takes none refuses it, as
    # OpenAI's do; test_chat_reasoning.py)
    "unknown_extra_fields": {"some_future_option": {"x": 1}, "verbosity": "low"},
    "service_tier_auto": {"service_tier": "auto"},
    "modalities_text": {"modalities": ["text"]},
    "stream_false_explicit": {"stream": False},
    "stream_null": {"stream": None},  # OpenAI's spec: "stream": boolean or null
}


@pytest.mark.parametrize("extra", list(HARMLESS.values()), ids=list(HARMLESS))
def test_a_harmless_field_a_client_sends_is_accepted(caller: Caller, extra: dict[str, Any]) -> None:
    body = {"model": "dev/echo", "messages": HELLO, **extra}

    response = _post(caller, body)

    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


def test_the_sdk_passing_stream_none_is_not_refused(caller: Caller) -> None:
    # The SDK types `stream` as Optional[Literal[False]]; wrappers that forward "unset" as None
    # send "stream": null, which OpenAI accepts.
    completion = caller.sdk().chat.completions.create(
        model="dev/echo",
        messages=HELLO,
        stream=None,
    )

    assert completion.choices[0].message.content == "Hello there"


def test_max_completion_tokens_is_honoured(caller: Caller) -> None:
    completion = caller.sdk().chat.completions.create(
        model="dev/echo",
        messages=[{"role": "user", "content": "one two three four"}],
        max_completion_tokens=2,
    )

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


# --- streams ------------------------------------------------------------------------------------
def test_a_stream_without_include_usage_has_openai_chunk_shapes(caller: Caller) -> None:
    response = _post(caller, {"model": "dev/echo", "messages": HELLO, "stream": True})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = _sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(isinstance(c["created"], int) and c["model"] == "dev/echo" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(len(c["choices"]) == 1 for c in chunks)  # no usage-only chunk when not asked
    assert all(c.get("usage") is None for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Hello there"


def test_a_stream_with_include_usage_ends_with_a_usage_chunk(caller: Caller) -> None:
    body = {
        "model": "dev/echo", "messages": HELLO, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    response = _post(caller, body)

    payloads = _sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    *content, last = chunks
    assert all("usage" in c and c["usage"] is None for c in content)
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] == (
        last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]
    )


def test_the_sdk_stream_iterates_and_the_stream_helper_accumulates(caller: Caller) -> None:
    sdk = caller.sdk()
    stream = sdk.chat.completions.create(
        model="dev/echo", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None

    with sdk.chat.completions.stream(model="dev/echo", messages=HELLO) as helper:
        for _ in helper:
            pass
        final = helper.get_final_completion()
    assert final.choices[0].message.content == "Hello there"
    assert final.choices[0].finish_reason == "stop"


def test_an_empty_reply_streams_a_role_chunk_and_a_finish_chunk(caller: Caller) -> None:
    response = _post(
        caller,
        {"model": "dev/echo", "messages": [{"role": "user", "content": ""}], "stream": True},
    )

    payloads = _sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# --- regenerate ---------------------------------------------------------------------------------
def test_regenerate_at_temperature_one_samples_again_instead_of_replaying(
    caller: Caller,
) -> None:
    # Open WebUI's and LibreChat's "regenerate" resend the very same conversation and sampling
    # parameters, expecting another sample. The identical-prompt cache used to replay the
    # first reply; on /v1 it now answers only temperature 0 (or an explicit "cache": true).
    body = {
        "model": "dev/echo", "temperature": 1.0,
        "messages": [{"role": "user", "content": f"Tell me a joke {uuid.uuid4()}"}],
    }  # fmt: skip
    for _ in range(2):
        assert _post(caller, body).status_code == 200

    records = caller.server.container.store.tables["usage_records"].values()
    mine = [r for r in records if r.user_id == caller.user_id]
    assert len(mine) == 2
    assert [r.cached for r in mine] == [False, False], "the regenerated reply was a replay"


# --- models -------------------------------------------------------------------------------------
def test_the_model_list_has_openais_shape(caller: Caller) -> None:
    with caller.http() as client:
        response = client.get("/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert body["data"], body
    for entry in body["data"]:
        assert entry["object"] == "model"
        assert isinstance(entry["id"], str)
        assert isinstance(entry["created"], int)
        assert isinstance(entry["owned_by"], str)


def test_the_sdk_retrieves_one_model(caller: Caller) -> None:
    # client.models.retrieve(id) is GET /v1/models/{id}, in OpenAI's Models API next to list.
    model = caller.sdk().models.retrieve("dev/echo")

    assert (model.id, model.object, model.owned_by) == ("dev/echo", "model", "dev")


def test_retrieving_an_unknown_model_is_an_openai_404(caller: Caller) -> None:
    with caller.http() as client:
        response = client.get("/v1/models/nope")

    error = _assert_openai_error(response, 404)
    assert error["code"] == "model_not_found"


# --- errors -------------------------------------------------------------------------------------
def test_no_key_and_a_bad_key_are_401_in_openais_shape(caller: Caller) -> None:
    with httpx.Client(base_url=caller.server.base_url) as anonymous:
        missing = anonymous.post(
            "/v1/chat/completions", json={"model": "dev/echo", "messages": HELLO}
        )
        bad = anonymous.post(
            "/v1/chat/completions",
            json={"model": "dev/echo", "messages": HELLO},
            headers={"Authorization": "Bearer sk-not-a-whalli-key"},
        )
    _assert_openai_error(missing, 401)
    _assert_openai_error(bad, 401)
    with pytest.raises(openai.AuthenticationError):
        caller.sdk(api_key="sk-wrong").chat.completions.create(model="dev/echo", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        caller.sdk(api_key="sk-wrong").models.list()


def test_an_unknown_model_is_404_model_not_found(caller: Caller) -> None:
    error = _assert_openai_error(_post(caller, {"model": "gpt-4o", "messages": HELLO}), 404)
    assert error["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        caller.sdk().chat.completions.create(model="nope/none", messages=HELLO, stream=True)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"n": 2}, "n"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream": "sometimes"}, "stream"),
    ],
    ids=["temperature", "n", "top_p", "stop", "stream"],
)
def test_a_bad_parameter_is_a_4xx_naming_the_param(
    caller: Caller, extra: dict[str, Any], param: str
) -> None:
    response = _post(caller, {"model": "dev/echo", "messages": HELLO, **extra})

    assert response.status_code == 400, response.text
    error = _assert_openai_error(response, response.status_code)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_a_missing_model_names_model_as_the_param(caller: Caller) -> None:
    # OpenAI: {"error": {"param": "model", ...}}; clients show the param to say what to fix.
    response = _post(caller, {"messages": HELLO})

    error = _assert_openai_error(response, response.status_code)
    assert response.status_code == 400
    assert error["param"] == "model", error


def test_a_max_completion_tokens_out_of_range_names_the_param_sent(caller: Caller) -> None:
    response = _post(caller, {"model": "dev/echo", "messages": HELLO, "max_completion_tokens": 0})

    error = _assert_openai_error(response, response.status_code)
    assert error["param"] == "max_completion_tokens", error
    assert "max_completion_tokens" in error["message"] or "max_tokens" not in error["message"]


def test_a_body_that_is_not_json_is_a_400_in_openais_shape(caller: Caller) -> None:
    with caller.http(**{"Content-Type": "application/json"}) as client:
        response = client.post("/v1/chat/completions", content=b'{"model": "dev/echo", ')
    _assert_openai_error(response, 400)


def test_an_unknown_v1_route_answers_openais_error_shape(caller: Caller) -> None:
    # OpenAI clients probe /v1/embeddings, /v1/completions, /v1/responses; the SDK reads
    # error.message from {"error": {...}} (problem+json left it without a message).
    with caller.http() as client:
        response = client.post("/v1/embeddings", json={"model": "dev/echo", "input": "x"})

    _assert_openai_error(response, 404)
    with pytest.raises(openai.NotFoundError) as raised:
        caller.sdk().embeddings.create(model="dev/echo", input="x")
    assert isinstance(raised.value.body, dict)
    assert "message" in raised.value.body


def test_a_wrong_method_on_v1_answers_openais_error_shape(caller: Caller) -> None:
    with caller.http() as client:
        response = client.get("/v1/chat/completions")

    _assert_openai_error(response, 405)


def test_a_rate_limited_caller_gets_429_with_retry_after_in_openais_shape(caller: Caller) -> None:
    with caller.http() as client:
        for _ in range(1000):
            response = client.get("/v1/models")
            if response.status_code != 200:
                break
    error = _assert_openai_error(response, 429)
    assert error["type"] == "rate_limit_error"
    assert int(response.headers["retry-after"]) > 0


def test_curl_without_a_content_type_still_works(caller: Caller) -> None:
    # curl -d '...' sends application/x-www-form-urlencoded when -H is forgotten.
    payload = json.dumps({"model": "dev/echo", "messages": HELLO})
    with caller.http(**{"Content-Type": "application/x-www-form-urlencoded"}) as client:
        response = client.post("/v1/chat/completions", content=payload)

    assert response.status_code == 200, response.text


def test_a_range_error_message_uses_openais_field_names(caller: Caller) -> None:
    # The message is what SDKs show the user; "topP"/"maxTokens" are not fields of this API.
    for extra in ({"top_p": 1.5}, {"max_tokens": 0}, {"presence_penalty": 5}):
        response = _post(caller, {"model": "dev/echo", "messages": HELLO, **extra})
        error = _assert_openai_error(response, response.status_code)
        [field] = extra
        assert field in error["message"], error


# --- the real app on real services, a fake OpenAI provider behind it ----------------------------
async def test_e2e_what_a_client_sends_reaches_the_provider_as_meant(world: World) -> None:  # noqa: F811
    tag = uuid.uuid4().hex
    completion = await world.sdk.chat.completions.create(
        model="openai/gpt-4o-mini",
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": f"Hi {tag}"}], "name": "al"},
        ],
        max_completion_tokens=50,
        stop="END",
        user="u" * 5000,
        metadata={"k": "v"},
        store=False,
        n=1,
        temperature=None,
        parallel_tool_calls=False,
        response_format={"type": "text"},
    )

    assert completion.object == "chat.completion"
    assert completion.model == "openai/gpt-4o-mini"
    assert completion.choices[0].message.content == "Hello, world!"
    sent = world.provider.requests[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"Hi {tag}", "name": "al"},  # who spoke, passed on
    ]
    assert sent["max_completion_tokens"] == 50
    assert sent["stop"] == ["END"]


async def test_e2e_a_stream_has_openais_chunks_from_the_provider_and_from_redis(
    world: World,  # noqa: F811
) -> None:
    prompt = f"stream {uuid.uuid4()}"

    async def chunks() -> list[Any]:
        stream = await world.sdk.chat.completions.create(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    for received in (await chunks(), await chunks()):  # the second from the cache
        assert received[0].choices[0].delta.role == "assistant"
        assert {c.id for c in received} == {received[0].id}
        assert all(c.object == "chat.completion.chunk" for c in received)
        assert all(c.model == "openai/gpt-4o-mini" for c in received)
        *content, last = received
        assert last.choices == []
        assert last.usage is not None
        assert content[-1].choices[0].finish_reason == "stop"
        assert "".join(c.choices[0].delta.content or "" for c in content) == "Hello, world!"


# --- Anthropic behind /v1: OpenAI-valid requests Anthropic's API refuses --------------------------
def _anthropic_with_its_documented_rules() -> Callable[[RecordedRequest], Reply]:
    """The fake Anthropic, also refusing what the real Messages API refuses with a 400:
    whitespace-only stop sequences, and empty content in any but a final assistant turn."""
    default = anthropic_default()

    def reply(request: RecordedRequest) -> Reply:
        for stop in request.body.get("stop_sequences") or ():
            if not stop.strip():
                message = "stop_sequences: each stop sequence must contain non-whitespace"
                return Reply(status=400, body=anthropic_error("invalid_request_error", message))
        messages = request.body.get("messages") or []
        for index, message in enumerate(messages):
            final_assistant = index == len(messages) - 1 and message["role"] == "assistant"
            if not message["content"] and not final_assistant:
                text = (
                    f"messages.{index}: all messages must have non-empty content except for "
                    "the optional final assistant message"
                )
                return Reply(status=400, body=anthropic_error("invalid_request_error", text))
        return default(request)

    return reply


@dataclass
class TwoProviders:
    anthropic: FakeProviderServer
    openai_fake: FakeProviderServer
    sdk: openai.AsyncOpenAI


@pytest.fixture
async def two_providers(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[TwoProviders]:
    async with (
        FakeProviderServer(_anthropic_with_its_documented_rules()) as anthropic,
        FakeProviderServer(openai_default()) as openai_fake,
    ):
        settings = _settings(
            stack_urls, unique,
            WHALLI_ANTHROPIC_API_KEY=API_KEY, WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
            WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=openai_fake.url,
        )  # fmt: skip
        container = build_container(settings)
        async with live_server(build_app(settings, container)) as client:
            secret, _ = await _api_key(client)
            base_url = f"{client.base_url}".rstrip("/") + "/v1"
            sdk = openai.AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0)
            async with sdk:
                yield TwoProviders(anthropic, openai_fake, sdk)


async def test_e2e_claude_answers_a_conversation_with_an_assistant_turn_of_null_content(
    two_providers: TwoProviders,
) -> None:
    # OpenAI accepts {"role": "assistant", "content": null} (a turn whose reply was empty or
    # was a tool call); sent as an empty Anthropic turn, Anthropic refused it and the
    # catalog's fallback (gpt-4o-mini) answered instead. The empty turn is now left out.
    completion = await two_providers.sdk.chat.completions.create(
        model="anthropic/claude-3-5-haiku",
        messages=[
            {"role": "user", "content": f"one {uuid.uuid4()}"},
            {"role": "assistant", "content": None},
            {"role": "user", "content": "two"},
        ],
    )

    assert completion.model == "anthropic/claude-3-5-haiku"
    assert two_providers.openai_fake.requests == []


async def test_e2e_claude_answers_with_a_newline_stop_sequence(
    two_providers: TwoProviders,
) -> None:
    # stop=["\n"] is valid for OpenAI (LangChain agents, eval harnesses, OpenAI's own examples);
    # Anthropic refuses whitespace-only stop sequences with a 400: Whalli applies them itself.
    completion = await two_providers.sdk.chat.completions.create(
        model="anthropic/claude-3-5-haiku",
        messages=[{"role": "user", "content": f"one line please {uuid.uuid4()}"}],
        stop=["\n", "END"],
    )

    assert completion.model == "anthropic/claude-3-5-haiku"
    assert two_providers.openai_fake.requests == []


async def test_e2e_control_claude_answers_a_plain_conversation(two_providers: TwoProviders) -> None:
    # The fixture is sound: without the two triggers above, Claude answers.
    completion = await two_providers.sdk.chat.completions.create(
        model="anthropic/claude-3-5-haiku",
        messages=[
            {"role": "user", "content": f"one {uuid.uuid4()}"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "two"},
        ],
        stop=["END"],
    )

    assert completion.model == "anthropic/claude-3-5-haiku"
    assert two_providers.openai_fake.requests == []
    sent = two_providers.anthropic.requests[-1].body
    assert sent["stop_sequences"] == ["END"]


async def test_e2e_a_fallbacks_reply_is_not_served_from_the_cache_as_the_model_asked_for(
    two_providers: TwoProviders,
) -> None:
    """Claude is overloaded, so the catalog's fallback (gpt-4o-mini) writes the reply and the
    completion says so. It was cached under Claude's key, and the identical request got it
    back named as Claude's: a fallback's reply is not cached, so Claude answers it now."""
    overloaded = Reply(status=529, body=anthropic_error("overloaded_error", "Overloaded"))
    two_providers.anthropic.script(overloaded, overloaded, overloaded)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": f"who wrote this {uuid.uuid4()}"}
    ]

    first = await two_providers.sdk.chat.completions.create(
        model="anthropic/claude-3-5-haiku", messages=messages, temperature=0
    )
    again = await two_providers.sdk.chat.completions.create(
        model="anthropic/claude-3-5-haiku", messages=messages, temperature=0
    )

    assert first.model == "openai/gpt-4o-mini"
    assert len(two_providers.openai_fake.requests) == 1
    assert again.model == "anthropic/claude-3-5-haiku"
    assert len(two_providers.anthropic.requests) == 4  # three overloaded, then this one


async def test_e2e_a_claude_refusal_is_finish_reason_content_filter(
    two_providers: TwoProviders,
) -> None:
    # Claude's streaming classifier ends a reply with stop_reason "refusal"; OpenAI's name for
    # "the content was cut by a safety filter" is finish_reason "content_filter" (which clients
    # show as such), not "stop" (a normal, complete answer).
    two_providers.anthropic.script(Reply(chunks=anthropic_stream(["I can"], stop_reason="refusal")))

    completion = await two_providers.sdk.chat.completions.create(
        model="anthropic/claude-3-5-haiku",
        messages=[{"role": "user", "content": f"something risky {uuid.uuid4()}"}],
    )

    assert completion.model == "anthropic/claude-3-5-haiku"
    assert completion.choices[0].finish_reason == "content_filter"
