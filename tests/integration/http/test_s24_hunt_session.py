"""Hunt S24 of this session's new code, end to end on the real app (embedded Postgres, Redis,
S3) with loopback providers speaking the real wire protocols: /v1 streams that open with SSE
comments while the first event is slow (``first_event.py``, ``_after_silence``, the read
watchdog read across two tasks), the /v1 error statuses, and the OpenAPI document's error
responses against what the routes really answer."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.http.test_identity_end_to_end import PASSWORD, _settings
from tests.integration.http.test_openai_sdk_end_to_end import _api_key
from tests.integration.http.test_s23_hunt_audio import body as audio_body
from tests.integration.http.test_s23_hunt_audio import transcribe
from tests.integration.http.test_s23_hunt_searches import Hunt, hunt_app
from tests.integration.http.test_search_last_run import smtp, web  # noqa: F401  (fixtures)
from tests.integration.test_transcription_worker import (
    WAV,
    Voice,
    _voice,
    queue_name,  # noqa: F401  (fixture)
    speech,  # noqa: F401  (fixture)
)
from tests.support.fake_providers import (
    API_KEY,
    DELTAS,
    FakeProviderServer,
    Reply,
    ScriptedCall,
    anthropic_default,
    anthropic_error,
    openai_default,
    openai_stream,
    openai_tool_stream,
)
from tests.support.fake_search import Answer, FakeSearchServer
from tests.support.fake_smtp import FakeSmtpServer
from tests.support.fake_transcription import API_KEY as SPEECH_KEY
from tests.support.fake_transcription import FakeTranscriptionServer
from tests.support.live_server import live_server
from whalli.adapters.catalog.toml_catalog import default_catalog_path
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.domain.model.errors import ServiceUnavailable
from whalli.entrypoints.http.asgi import build_app

GPT = "openai/gpt-4o-mini"  # free, no fallback
HAIKU = "anthropic/claude-3-5-haiku"  # falls back to gpt-4o-mini
HEARTBEAT_S = "0.5"
GAUGE = "whalli_sse_connections_active"
GUARD_S = 30  # a bound on a wait, never a speed assertion
SECRET_TEXT = "provider-said-secret-7c1d"


@dataclass
class V1:
    provider: FakeProviderServer
    anthropic: FakeProviderServer
    http: httpx.AsyncClient
    auth: dict[str, str]


@asynccontextmanager
async def _v1(stack_urls: StackUrls, unique: str, **overrides: str) -> AsyncIterator[V1]:
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(anthropic_default()) as anthropic,
    ):
        settings = _settings(
            stack_urls, unique,
            WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=provider.url,
            WHALLI_ANTHROPIC_API_KEY=API_KEY, WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
            **{"WHALLI_CHAT_HEARTBEAT_S": HEARTBEAT_S, **overrides},
        )  # fmt: skip
        async with live_server(build_app(settings, build_container(settings))) as client:
            secret, _ = await _api_key(client)
            yield V1(provider, anthropic, client, {"Authorization": f"Bearer {secret}"})


@pytest.fixture
async def v1(stack_urls: StackUrls, migrated_database_url: str, unique: str) -> AsyncIterator[V1]:
    async with _v1(
        stack_urls, unique, WHALLI_PROVIDER_MAX_ATTEMPTS="1",
        WHALLI_PROVIDER_FIRST_TOKEN_TIMEOUT_S="20", WHALLI_PROVIDER_IDLE_TIMEOUT_S="1",
    ) as found:  # fmt: skip
        yield found


def _request(model: str = GPT, **more: Any) -> dict[str, Any]:
    # unique: the shared Redis may hold the cached replies of other runs
    question = f"Think long about {uuid.uuid4()}"
    return {
        "model": model, "messages": [{"role": "user", "content": question}], "stream": True,
        **more,
    }  # fmt: skip


async def _until_comment(lines: AsyncIterator[str]) -> list[str]:
    seen: list[str] = []
    async with asyncio.timeout(GUARD_S):
        async for line in lines:
            seen.append(line)
            if line.startswith(":"):
                return seen
    raise AssertionError(f"the stream ended without a comment: {seen}")


def _data(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


async def _silent_then(v1: V1, reply_gate: asyncio.Event, model: str = GPT) -> list[str]:
    """A streamed completion whose provider waits for ``reply_gate``: the lines once a comment
    opened the stream and the gate was let go."""
    async with v1.http.stream(
        "POST", "/v1/chat/completions", json=_request(model), headers=v1.auth
    ) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        before = await _until_comment(lines)
        assert _data(before) == []
        reply_gate.set()
        async with asyncio.timeout(GUARD_S):
            return [line async for line in lines]


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _gauge(client: httpx.AsyncClient) -> float:
    response = await client.get("/api/metrics")
    assert response.status_code == 200, response.text
    return _sample(response.text, GAUGE)


async def _gauge_back_to(client: httpx.AsyncClient, value: float) -> float:
    """The gauge once it is back at ``value`` (a guard bounds the wait: the server's ``finally``
    runs a moment after the client saw the end of the stream)."""
    found = await _gauge(client)
    async with asyncio.timeout(GUARD_S):
        while found != value:
            await asyncio.sleep(0.05)
            found = await _gauge(client)
    return found


# --- /v1 streams opened before their first event ----------------------------------------------


async def test_a_stream_going_silent_after_a_late_first_token_still_ends_at_the_idle_timeout(
    v1: V1,
) -> None:
    # the first piece comes after the heartbeat (the stream opened with a comment), the reading
    # then moves to the request's task: the idle timeout must still cut a silent provider
    gate = asyncio.Event()
    pieces = openai_stream(usage=None, done=False)[:2]  # the role, one token, then nothing
    v1.provider.script(Reply(chunks=pieces, gate=gate, gate_after=0, hold=True))

    rest = await _silent_then(v1, gate)

    data = _data(rest)
    assert "[DONE]" not in data
    chunks = [json.loads(d) for d in data]
    assert "error" in chunks[-1], chunks
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c.get("choices")
    )
    assert text == DELTAS[0]
    async with asyncio.timeout(GUARD_S):
        await v1.provider.disconnected.wait()  # the upstream request was closed


async def test_a_first_token_timeout_during_the_silence_is_an_error_chunk_closing_upstream(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _v1(
        stack_urls, unique, WHALLI_PROVIDER_MAX_ATTEMPTS="1",
        WHALLI_PROVIDER_FIRST_TOKEN_TIMEOUT_S="1.5",
    ) as v1:  # fmt: skip
        gate = asyncio.Event()  # never set: the model never answers
        v1.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=0))
        async with v1.http.stream(
            "POST", "/v1/chat/completions", json=_request(), headers=v1.auth
        ) as response:
            assert response.status_code == 200  # opened by a comment before the timeout
            lines = response.aiter_lines()
            await _until_comment(lines)
            async with asyncio.timeout(GUARD_S):
                data = _data([line async for line in lines])

        assert "[DONE]" not in data
        (only,) = [json.loads(d) for d in data]
        assert only["error"]["type"] == "server_error", only
        assert API_KEY not in json.dumps(only)
        async with asyncio.timeout(GUARD_S):
            await v1.provider.disconnected.wait()
        assert len(v1.provider.requests) == 1


async def test_a_tool_call_as_the_first_event_after_the_silence_opens_without_content(
    v1: V1,
) -> None:
    gate = asyncio.Event()
    call = ScriptedCall(id="call_s24", name="lookup", pieces=['{"q":', ' "whales"}'])
    v1.provider.script(Reply(chunks=openai_tool_stream([call]), gate=gate, gate_after=0))

    data = _data(await _silent_then(v1, gate))

    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    opening = chunks[0]["choices"][0]["delta"]
    assert opening["role"] == "assistant"
    assert opening.get("content") is None  # as OpenAI opens a tool call: no empty text
    calls = [
        piece
        for c in chunks if c.get("choices")
        for piece in c["choices"][0]["delta"].get("tool_calls") or []
    ]  # fmt: skip
    assert calls[0]["id"] == "call_s24"
    assert calls[0]["function"]["name"] == "lookup"
    assert "".join(p["function"].get("arguments") or "" for p in calls) == '{"q": "whales"}'
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
    assert finishes[-1] == "tool_calls"


async def test_a_fallback_taking_over_after_the_silence_names_itself_in_every_chunk(
    v1: V1,
) -> None:
    gate = asyncio.Event()
    overloaded = json.dumps(anthropic_error("overloaded_error", "Overloaded")).encode()
    v1.anthropic.script(Reply(status=529, chunks=[overloaded], gate=gate, gate_after=0))

    data = _data(await _silent_then(v1, gate, HAIKU))

    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["model"] for c in chunks} == {GPT}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "".join(DELTAS)
    assert len(v1.anthropic.requests) == 1
    assert len(v1.provider.requests) == 1


async def test_the_sse_gauge_returns_to_its_value_after_every_silent_stream_path(v1: V1) -> None:
    baseline = await _gauge(v1.http)

    gate = asyncio.Event()  # a reply after the silence
    v1.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=0))
    assert _data(await _silent_then(v1, gate))[-1] == "[DONE]"
    assert await _gauge_back_to(v1.http, baseline) == baseline

    gate = asyncio.Event()  # a refusal after the silence: an error chunk
    refused = json.dumps({"error": {"message": "no", "type": "invalid_request_error"}}).encode()
    v1.provider.script(Reply(status=400, chunks=[refused], gate=gate, gate_after=0))
    assert "error" in json.loads(_data(await _silent_then(v1, gate))[-1])
    assert await _gauge_back_to(v1.http, baseline) == baseline

    gate = asyncio.Event()  # never set: the client leaves during the silence
    v1.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=0))
    async with v1.http.stream(
        "POST", "/v1/chat/completions", json=_request(), headers=v1.auth
    ) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        await _until_comment(lines)
        assert await _gauge(v1.http) == baseline + 1  # counted while open
    async with asyncio.timeout(GUARD_S):
        await v1.provider.disconnected.wait()
    assert await _gauge_back_to(v1.http, baseline) == baseline


async def test_a_non_streamed_completion_with_a_slow_first_token_is_plain_json(v1: V1) -> None:
    gate = asyncio.Event()
    v1.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=0))
    body = _request(stream=False)
    asked = asyncio.ensure_future(v1.http.post("/v1/chat/completions", json=body, headers=v1.auth))
    async with asyncio.timeout(GUARD_S):
        while not v1.provider.requests:
            await asyncio.sleep(0.05)
    await asyncio.sleep(float(HEARTBEAT_S) * 3)  # several heartbeats of silence, on purpose
    gate.set()
    async with asyncio.timeout(GUARD_S):
        answer = await asked

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    completion = answer.json()  # no comment before it: the body is one JSON document
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == "".join(DELTAS)


async def test_a_client_leaving_before_the_first_heartbeat_closes_the_upstream_request(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    # a long hold: the client leaves while the handler still awaits the first event, before
    # any byte of the answer (no status yet)
    async with _v1(stack_urls, unique, WHALLI_CHAT_HEARTBEAT_S="5") as v1:
        gate = asyncio.Event()  # never set
        v1.provider.script(Reply(chunks=openai_stream(), gate=gate, gate_after=0))
        asked = asyncio.ensure_future(
            v1.http.post("/v1/chat/completions", json=_request(), headers=v1.auth)
        )
        async with asyncio.timeout(GUARD_S):
            while not v1.provider.requests:
                await asyncio.sleep(0.05)
        asked.cancel()  # the client goes away
        with pytest.raises(asyncio.CancelledError):
            await asked
        async with asyncio.timeout(GUARD_S):
            await v1.provider.disconnected.wait()
        assert v1.provider.early_disconnects == 1
        # the app goes on serving
        assert (await v1.http.get("/v1/models", headers=v1.auth)).status_code == 200


# --- /v1 error statuses -------------------------------------------------------------------------


async def test_v1_rule_errors_are_400_while_api_rule_errors_stay_422_problems(v1: V1) -> None:
    bad = {"model": GPT, "messages": [{"role": "user", "content": "hi"}], "temperature": 9}
    on_v1 = await v1.http.post("/v1/chat/completions", json=bad, headers=v1.auth)
    assert on_v1.status_code == 400, on_v1.text
    error = on_v1.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "temperature")

    # a rule /api refuses (here: no search provider configured) stays a 422 problem there
    on_api = await v1.http.post(
        "/api/searches", json={"query": "whales", "intervalMinutes": 60}, headers=v1.auth
    )
    assert on_api.status_code == 422, on_api.text
    assert on_api.json()["code"] == "searches_not_configured"
    assert on_api.headers["content-type"].startswith("application/problem+json")


# --- session-only routes and the login limit ----------------------------------------------------


async def test_an_api_key_is_refused_with_403_even_once_the_login_limit_is_spent(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _v1(stack_urls, unique, WHALLI_RATE_LIMIT_LOGIN_PER_ACCOUNT_IP="2/60") as v1:
        email = f"s24-{uuid.uuid4().hex[:10]}@example.com"
        registered = await v1.http.post(
            "/api/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        session = {"Authorization": f"Bearer {registered.json()['tokens']['accessToken']}"}
        made = await v1.http.post("/api/keys", json={"name": "cli"}, headers=session)
        key = {"X-API-Key": made.json()["secret"]}
        wrong = {"currentPassword": "not-the-password-1", "newPassword": "An0ther-long-phrase!"}
        spent = [
            (await v1.http.post("/api/auth/password", json=wrong, headers=session)).status_code
            for _ in range(3)
        ]
        assert spent[-1] == 429, spent  # the account's attempts are spent

        changed = await v1.http.post(
            "/api/auth/password",
            json={"currentPassword": PASSWORD, "newPassword": "An0ther-long-phrase!"},
            headers=key,
        )
        deleted = await v1.http.request(
            "DELETE", "/api/auth/me", json={"password": PASSWORD}, headers=key
        )

        for refused in (changed, deleted):
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "api_key_not_allowed"
            assert "retry-after" not in refused.headers
        me = await v1.http.get("/api/auth/me", headers=key)
        assert me.status_code == 200, me.text  # nothing was deleted


# --- recurring searches: lastError through the real HTTP adapter --------------------------------


@pytest.fixture
async def hunt(
    stack_urls: StackUrls, migrated_database_url: str, unique: str,
    web: FakeSearchServer, smtp: FakeSmtpServer,  # noqa: F811
) -> AsyncIterator[Hunt]:  # fmt: skip
    async with hunt_app(stack_urls, unique, web, smtp) as found:
        yield found


async def test_a_rate_limited_then_garbled_provider_shows_short_reasons_and_no_provider_text(
    hunt: Hunt,
) -> None:
    ada = await hunt.user("ada")
    made = await hunt.subscribe(ada, "limited then garbled")
    path = f"/api/searches/{made['id']}"
    try:
        await hunt.run(made["id"])
        ok = (await hunt.client.get(path, headers=ada["auth"])).json()

        limited = {"error": f"{SECRET_TEXT} slow down"}
        hunt.web.script(Answer(429, limited, {"retry-after": "30"}))
        with pytest.raises(ServiceUnavailable, match="429"):  # the queue retries it
            await hunt.run(made["id"])
        after_429 = (await hunt.client.get(path, headers=ada["auth"])).json()
        assert after_429["lastError"] == "The search provider is limiting searches (HTTP 429)."
        assert after_429["lastRunAt"] == ok["lastRunAt"]

        garbled = f"<html>{SECRET_TEXT}</html>".encode()
        hunt.web.script(Answer(200, garbled, {"content-type": "text/html"}))
        await hunt.run(made["id"])  # not retried: the answer is no search result
        after_garbage = (await hunt.client.get(path, headers=ada["auth"])).json()
        assert after_garbage["lastError"] == "The search provider answered without results."
        assert after_garbage["lastRunAt"] == ok["lastRunAt"]
        listed = await hunt.client.get("/api/searches", headers=ada["auth"])
        assert SECRET_TEXT not in listed.text

        # an interval change right after the failure keeps what is known of the runs
        slower = await hunt.client.patch(path, json={"intervalMinutes": 120}, headers=ada["auth"])
        assert slower.status_code == 200, slower.text
        assert slower.json()["lastError"] == after_garbage["lastError"]
        assert slower.json()["lastErrorAt"] == after_garbage["lastErrorAt"]
        assert slower.json()["lastRunAt"] == ok["lastRunAt"]
    finally:
        gone = await hunt.client.delete(path, headers=ada["auth"])
        assert gone.status_code == 204, gone.text


# --- the OpenAPI document against what routes answer --------------------------------------------


async def _documented(client: httpx.AsyncClient, method: str, path: str) -> set[int]:
    document = await client.get("/api/docs/openapi.json")
    assert document.status_code == 200
    responses = document.json()["paths"][path][method]["responses"]
    return {int(status) for status in responses if status.isdigit()}


async def test_a_list_filtered_by_a_project_the_caller_cannot_see_documents_its_404(
    v1: V1,
) -> None:
    somebody_elses = uuid.uuid4()
    for path in ("/api/chats", "/api/files", "/api/searches"):
        answer = await v1.http.get(path, params={"projectId": str(somebody_elses)}, headers=v1.auth)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    imported = await v1.http.post(
        "/api/chats/import",
        json={"format": "chatgpt", "conversations": [], "projectId": str(somebody_elses)},
        headers=v1.auth,
    )
    assert imported.status_code == 404, imported.text
    for path in ("/api/chats", "/api/files", "/api/searches"):
        assert 404 in await _documented(v1.http, "get", path), path
    assert 404 in await _documented(v1.http, "post", "/api/chats/import")


@pytest.fixture
async def voice(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, queue_name: str,  # noqa: F811
    speech: FakeTranscriptionServer, tmp_path: Path,  # noqa: F811
) -> AsyncIterator[Voice]:  # fmt: skip
    shipped = default_catalog_path().read_text()
    free = '[[transcription]]\nid = "whisper-1"\nprovider = "openai"\nmin_plan = "free"\n'
    assert free in shipped
    catalog = tmp_path / "models.toml"
    catalog.write_text(shipped.replace(free, free.replace('"free"', '"pro"')))
    async with _voice(
        stack_urls, unique, speech, WHALLI_QUEUE_NAME=queue_name,
        WHALLI_TRANSCRIPTION_BASE_URL=speech.base_url, WHALLI_TRANSCRIPTION_API_KEY=SPEECH_KEY,
        WHALLI_CATALOG_PATH=str(catalog),
    ) as found:  # fmt: skip
        yield found


async def test_the_transcription_routes_document_lists_the_403_and_404_it_answers(
    voice: Voice,
) -> None:
    above_plan = await transcribe(voice, audio_body(WAV))
    assert above_plan.status_code == 403, above_plan.text
    assert above_plan.json()["error"]["code"] == "model_not_in_plan"
    unknown = await transcribe(voice, audio_body(WAV, fields={"model": "whisper-9"}))
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["error"]["param"] == "model"
    assert len(voice.speech.requests) == 0  # neither reached the provider

    documented = await _documented(voice.client, "post", "/v1/audio/transcriptions")
    assert {403, 404} <= documented, documented
