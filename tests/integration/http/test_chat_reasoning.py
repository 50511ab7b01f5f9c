"""Reasoning models through the real app, Postgres and Redis, the provider on loopback: the
model's thinking streams as ``reasoning`` events (``reasoning_content`` on /v1), is kept with
its reply but never sent back as context, and a reasoning effort is asked only of a model that
takes one."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.integration.http.test_chat_flow import Chat, _app
from tests.integration.http.test_chat_regenerate import messages
from tests.integration.http.test_new_features_hunt import _plan
from tests.support.fake_providers import (
    API_KEY,
    DELTAS,
    FakeProviderServer,
    Reply,
    anthropic_default,
    openai_chunk,
    openai_default,
    openai_stream,
    sse,
)
from tests.support.fake_reasoning import (
    THOUGHTS,
    anthropic_thinking_stream,
    openai_reasoning_stream,
)
from whalli.adapters.embedded.stack import StackUrls

MODEL = "openai/gpt-4o-mini"
REASONER = "openai/o4-mini"


def named(events: list[tuple[str | None, str, dict[str, Any]]], name: str) -> list[str]:
    return [data["delta"] for _, event, data in events if event == name]


async def test_a_models_reasoning_streams_as_reasoning_events_and_stays_out_of_the_context(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_reasoning_stream()))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Hi {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])

    assert named(events, "reasoning") == list(THOUGHTS)
    assert named(events, "token") == list(DELTAS)
    order = [event for _, event, _ in events]
    assert order.index("token") > max(i for i, e in enumerate(order) if e == "reasoning")
    assert events[-1][1] == "done"
    reply = (await messages(chat, started["chatId"], alice["auth"]))[1]
    assert (reply["content"], reply["reasoning"]) == ("".join(DELTAS), "".join(THOUGHTS))

    more = await chat.start(alice["auth"], model=MODEL, message="And?", chatId=started["chatId"])
    await chat.events(more["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert sent[1] == {"role": "assistant", "content": "".join(DELTAS)}  # no reasoning in it
    question = (await messages(chat, started["chatId"], alice["auth"]))[0]
    assert question["reasoning"] is None


async def test_a_reasoning_effort_goes_only_to_a_model_that_takes_one(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    refused = await chat.client.post(
        "/api/chat/start", headers=alice["auth"],
        json={"model": MODEL, "message": "x", "params": {"reasoningEffort": "high"}},
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "reasoningEffort"
    assert (await chat.client.get("/api/chats", headers=alice["auth"])).json()["items"] == []
    unknown = await chat.client.post(
        "/api/chat/start", headers=alice["auth"],
        json={"model": MODEL, "message": "x", "params": {"reasoningEffort": "extreme"}},
    )  # fmt: skip
    assert unknown.status_code == 400, unknown.text  # as every body the schema refuses
    assert unknown.json()["errors"][0]["key"] == "params.reasoningEffort"

    await _plan(chat, alice, "pro")
    calls = len(chat.provider.requests)
    started = await chat.start(
        alice["auth"], model=REASONER, message=f"Think {uuid.uuid4()}",
        params={"reasoningEffort": "high"},
    )  # fmt: skip
    assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    sent = chat.provider.requests[calls].body
    assert (sent["model"], sent["reasoning_effort"]) == ("o4-mini", "high")

    models = (await chat.client.get("/api/models", headers=alice["auth"])).json()
    takes = {m["id"]: m["capabilities"]["reasoning"] for m in models}
    assert (takes[REASONER], takes[MODEL]) == (True, False)

    preset = await chat.client.post(
        "/api/presets", headers=alice["auth"],
        json={"name": "Deep", "model": MODEL, "params": {"reasoningEffort": "low"}},
    )  # fmt: skip
    assert preset.status_code == 422, preset.text
    assert preset.json()["field"] == "params.reasoningEffort"
    kept = await chat.client.post(
        "/api/presets", headers=alice["auth"],
        json={"name": "Deep", "model": REASONER, "params": {"reasoningEffort": "low"}},
    )  # fmt: skip
    assert kept.status_code == 201, kept.text
    assert kept.json()["params"] == {"reasoningEffort": "low"}


async def _v1_key(chat: Chat, auth: dict[str, str]) -> dict[str, str]:
    created = await chat.client.post("/api/keys", json={"name": "sdk"}, headers=auth)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['secret']}"}


async def test_v1_passes_reasoning_on_as_reasoning_content(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    key = await _v1_key(chat, alice["auth"])
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Hi {uuid.uuid4()}"}]}

    chat.provider.script(Reply(chunks=openai_reasoning_stream()))
    whole = await chat.client.post("/v1/chat/completions", json=body, headers=key)
    assert whole.status_code == 200, whole.text
    message = whole.json()["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == (
        "".join(DELTAS), "".join(THOUGHTS),
    )  # fmt: skip

    chat.provider.script(Reply(chunks=openai_reasoning_stream(field="reasoning")))
    streamed = await chat.client.post(
        "/v1/chat/completions", json=body | {"stream": True, "cache": False}, headers=key
    )
    assert streamed.status_code == 200, streamed.text
    deltas = [
        json.loads(line[6:])["choices"][0]["delta"]
        for line in streamed.text.splitlines()
        if line.startswith("data: {") and '"choices":[{' in line
    ]
    assert [d["reasoning_content"] for d in deltas if "reasoning_content" in d] == list(THOUGHTS)
    assert "".join(d.get("content") or "" for d in deltas) == "".join(DELTAS)

    plain = await chat.client.post(
        "/v1/chat/completions", json=body | {"messages": [{"role": "user", "content": "x"}]},
        headers=key,
    )  # fmt: skip
    assert "reasoning_content" not in plain.json()["choices"][0]["message"]

    for effort, param in (("high", "reasoning_effort"), ("extreme", "reasoning_effort")):
        refused = await chat.client.post(
            "/v1/chat/completions", json=body | {"reasoning_effort": effort}, headers=key
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == param


async def test_a_shared_link_shows_a_replys_reasoning_as_the_chat_does(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    chat.provider.script(Reply(chunks=openai_reasoning_stream()))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Think {uuid.uuid4()}")
    await chat.events(started["sessionId"])

    made = await chat.client.post(f"/api/chats/{started['chatId']}/shares", headers=alice["auth"])
    assert made.status_code == 201, made.text
    public = await chat.client.get(made.json()["url"])

    assert public.status_code == 200, public.text
    question, reply = public.json()["messages"]
    assert question["reasoning"] is None
    assert (reply["content"], reply["reasoning"]) == ("".join(DELTAS), "".join(THOUGHTS))


async def test_an_effort_or_max_tokens_the_model_does_not_take_is_a_422_before_any_call(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    await _plan(chat, alice, "pro")
    calls = len(chat.provider.requests)
    bodies = {
        "reasoningEffort": {"model": REASONER, "params": {"reasoningEffort": "minimal"}},
        "maxTokens": {"model": MODEL, "params": {"maxTokens": 16_385}},
    }
    for field, body in bodies.items():
        refused = await chat.client.post(
            "/api/chat/start", headers=alice["auth"], json={"message": "x", **body}
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["field"] == field
    assert "low or medium or high, not minimal" in refused_detail(
        await chat.client.post(
            "/api/presets",
            headers=alice["auth"],
            json={"name": "Fast", "model": REASONER, "params": {"reasoningEffort": "minimal"}},
        )
    )
    assert (await chat.client.get("/api/chats", headers=alice["auth"])).json()["items"] == []
    assert len(chat.provider.requests) == calls

    models = {
        m["id"]: m for m in (await chat.client.get("/api/models", headers=alice["auth"])).json()
    }
    assert models[REASONER]["capabilities"]["reasoningEfforts"] == ["low", "medium", "high"]
    assert models[MODEL]["maxOutputTokens"] == 16_384
    started = await chat.start(
        alice["auth"], model=MODEL, message=f"Long {uuid.uuid4()}", params={"maxTokens": 16_384}
    )
    assert (await chat.events(started["sessionId"]))[-1][1] == "done"
    assert chat.provider.requests[-1].body["max_completion_tokens"] == 16_384


def refused_detail(response: Any) -> str:
    assert response.status_code == 422, response.text
    detail: str = response.json()["detail"]
    return detail


async def test_v1_refuses_an_effort_or_max_tokens_the_model_does_not_take_naming_the_param(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    await _plan(chat, alice, "pro")
    key = await _v1_key(chat, alice["auth"])
    calls = len(chat.provider.requests)
    for param, extra in (
        ("reasoning_effort", {"model": REASONER, "reasoning_effort": "minimal"}),
        ("max_tokens", {"model": MODEL, "max_tokens": 16_385}),
    ):
        body = {"messages": [{"role": "user", "content": "Hi"}], **extra}
        refused = await chat.client.post("/v1/chat/completions", json=body, headers=key)
        assert refused.status_code == 400, refused.text  # OpenAI's status (/api: a 422)
        assert refused.json()["error"]["param"] == param
    assert len(chat.provider.requests) == calls


async def test_a_chat_with_an_adaptive_claude_asks_it_for_an_effort_not_a_budget(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Claude Sonnet 4.6 (the shipped catalog's adaptive_thinking): a chat's reasoningEffort
    is Anthropic's effort, and its thinking comes back as the reply's reasoning."""
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(anthropic_default()) as anthropic,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
        ) as chat,
    ):  # fmt: skip
        alice = await chat.world.register("alice")
        await _plan(chat, alice, "pro")
        anthropic.script(Reply(chunks=anthropic_thinking_stream()))
        started = await chat.start(
            alice["auth"], model="anthropic/claude-sonnet-4-6", message=f"Hm {uuid.uuid4()}",
            params={"reasoningEffort": "minimal"},
        )  # fmt: skip
        events = await chat.events(started["sessionId"])

    assert events[-1][1] == "done"
    assert "".join(e[2]["delta"] for e in events if e[1] == "reasoning") == "".join(THOUGHTS)
    sent = anthropic.requests[-1].body
    assert sent["thinking"] == {"type": "adaptive"}
    assert sent["output_config"] == {"effort": "low"}


async def test_the_hidden_reasoning_tokens_a_provider_reports_are_told_kept_and_summed(
    chat: Chat,
) -> None:
    """OpenAI's ``completion_tokens_details.reasoning_tokens``: in the ``done`` event, the
    stored reply and the caller's ``/api/usage``."""
    alice = await chat.world.register("alice")
    stream = openai_stream(usage=None)
    ending = openai_chunk({}) | {"choices": []}
    ending["usage"] = {
        "prompt_tokens": 9, "completion_tokens": 70, "total_tokens": 79,
        "completion_tokens_details": {"reasoning_tokens": 64},
    }  # fmt: skip
    chat.provider.script(Reply(chunks=[*stream[:-1], sse(ending), stream[-1]]))
    started = await chat.start(alice["auth"], model=MODEL, message=f"Hm {uuid.uuid4()}")
    events = await chat.events(started["sessionId"])
    usage = await chat.client.get("/api/usage", headers=alice["auth"])

    assert events[-1][1] == "done"
    assert events[-1][2]["usage"] == {
        "promptTokens": 9, "completionTokens": 70, "cachedPromptTokens": 0,
        "cacheWriteTokens": 0, "reasoningTokens": 64,
    }  # fmt: skip
    reply = (await messages(chat, started["chatId"], alice["auth"]))[1]
    assert reply["usage"] == events[-1][2]["usage"]
    assert usage.status_code == 200, usage.text
    assert usage.json()["total"]["reasoningTokens"] == 64
    assert usage.json()["total"]["completionTokens"] == 70
