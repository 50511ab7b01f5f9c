"""The chat flow through the real app, container, Postgres and Redis, with providers on loopback."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.integration.http.test_identity_end_to_end import World, _settings
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    Reply,
    anthropic_default,
    anthropic_error,
    openai_default,
    openai_error,
)
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.domain.model.chats import MessageRole, MessageStatus
from whalli.entrypoints.http.asgi import build_app

# the done event's usage figures apart from the prompt and completion counts, all 0 here
NOTHING_APART = {"cachedPromptTokens": 0, "cacheWriteTokens": 0, "reasoningTokens": 0}


class Chat:
    def __init__(
        self, world: World, provider: FakeProviderServer, app: Litestar | None = None
    ) -> None:
        self.world, self.provider = world, provider
        self.app = app  # the app served, when a test needs to reach into it

    @property
    def client(self) -> AsyncTestClient[Litestar]:
        return self.world.client

    async def start(self, auth: dict[str, str], **body: Any) -> dict[str, Any]:
        response = await self.client.post("/api/chat/start", json=body, headers=auth)
        assert response.status_code == 201, response.text
        started: dict[str, Any] = response.json()
        return started

    async def events(
        self, session_id: str, *, last_event_id: str | None = None, limit: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> list[tuple[str | None, str, dict[str, Any]]]:  # fmt: skip
        """(id, event, data) until done/error (or ``limit`` events), read like EventSource."""
        sent = dict(headers or {})
        if last_event_id:
            sent["Last-Event-ID"] = last_event_id
        url = f"/api/chat/stream?sessionId={session_id}"
        async with self.client.stream("GET", url, headers=sent) as response:
            assert response.status_code == 200, await response.aread()
            return await _read_events(response, limit)

    async def start_streaming(
        self, auth: dict[str, str], **body: Any
    ) -> list[tuple[str | None, str, dict[str, Any]]]:
        """``POST /api/chat/start`` asking for the reply as events: one request."""
        headers = {**auth, "Accept": "text/event-stream"}
        async with self.client.stream(
            "POST", "/api/chat/start", json=body, headers=headers
        ) as response:
            assert response.status_code == 201, await response.aread()
            return await _read_events(response, None)


async def _read_events(
    response: Any, limit: int | None
) -> list[tuple[str | None, str, dict[str, Any]]]:
    """(id, event, data) until done/error (or ``limit`` events), parsed like EventSource."""
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    found: list[tuple[str | None, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                found.append(
                    (fields.get("id"), fields.get("event", "message"), json.loads(fields["data"]))
                )
                if found[-1][1] in ("done", "error") or len(found) == limit:
                    break
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        fields[name] = fields[name] + "\n" + value if name in fields else value
    return found


def _text(events: list[tuple[str | None, str, dict[str, Any]]]) -> str:
    return "".join(data["delta"] for _, name, data in events if name == "token")


async def test_a_reply_streams_token_by_token_and_is_saved_with_its_usage(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    prompt = f"Say hello {uuid.uuid4()}"  # unique: the shared Redis may remember other runs
    started = await chat.start(alice["auth"], model="openai/gpt-4o-mini", message=prompt)
    events = await chat.events(started["sessionId"])
    tokens = [e for e in events if e[1] == "token"]
    assert [d["delta"] for _, _, d in tokens] == ["Hello", ", ", "world", "!"]
    assert all(event_id for event_id, _, _ in events)
    name, done = events[-1][1], events[-1][2]
    assert name == "done"
    assert done["cached"] is False
    assert done["usage"] == {"promptTokens": 11, "completionTokens": 4, **NOTHING_APART}
    assert done["finishReason"] == "stop"
    assert done["costUsd"] > 0
    sent = chat.provider.requests[-1].body
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["messages"][-1] == {"role": "user", "content": prompt}

    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        messages = await uow.chats.list_messages(uuid.UUID(started["chatId"]))
        usage = await uow.usage.totals(uuid.UUID(alice["user"]["id"]), since=messages[0].created_at)
    reply = messages[-1]
    assert [m.role for m in messages] == [MessageRole.USER, MessageRole.ASSISTANT]
    assert reply.status is MessageStatus.COMPLETE
    assert reply.content == "Hello, world!"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 4)
    assert reply.model == "openai/gpt-4o-mini"
    assert reply.provider == "openai"
    assert reply.ttft_ms is not None
    assert reply.total_ms is not None
    assert reply.finish_reason == "stop"
    assert usage.completion_tokens == 4


async def test_a_chats_system_prompt_reaches_the_provider_first_and_keys_the_cache(
    chat: Chat,
) -> None:
    """Set at the start, shown by the chat, changed by PATCH; an identical question under
    another system prompt is not served the other's cached answer."""
    alice = await chat.world.register("alice")
    prompt = f"Who are you? {uuid.uuid4()}"
    model = "openai/gpt-4o-mini"
    started = await chat.start(
        alice["auth"], model=model, message=prompt, systemPrompt="You are a pirate."
    )
    await chat.events(started["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert sent == [
        {"role": "system", "content": "You are a pirate."}, {"role": "user", "content": prompt},
    ]  # fmt: skip
    url = f"/api/chats/{started['chatId']}"
    shown = (await chat.client.get(url, headers=alice["auth"])).json()
    assert shown["systemPrompt"] == "You are a pirate."
    listed = (await chat.client.get("/api/chats", headers=alice["auth"])).json()["items"]
    assert "systemPrompt" not in listed[0]

    calls = len(chat.provider.requests)
    other = await chat.start(alice["auth"], model=model, message=prompt, systemPrompt="Be a cat.")
    assert (await chat.events(other["sessionId"]))[-1][2]["cached"] is False
    same = await chat.start(
        alice["auth"], model=model, message=prompt, systemPrompt="You are a pirate."
    )
    assert (await chat.events(same["sessionId"]))[-1][2]["cached"] is True
    assert len(chat.provider.requests) == calls + 1

    patched = await chat.client.patch(
        url, json={"systemPrompt": "Be terse."}, headers=alice["auth"]
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["systemPrompt"] == "Be terse."
    more = await chat.start(alice["auth"], model=model, message="Go on.", chatId=started["chatId"])
    await chat.events(more["sessionId"])
    sent = chat.provider.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Be terse."}
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]

    refused = await chat.client.post(
        "/api/chat/start", headers=alice["auth"],
        json={"model": model, "message": "x", "chatId": started["chatId"], "systemPrompt": "y"},
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "PATCH" in refused.json()["detail"]
    removed = await chat.client.patch(url, json={"systemPrompt": None}, headers=alice["auth"])
    assert removed.json()["systemPrompt"] is None


async def test_the_usage_summary_counts_streamed_and_cached_replies(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    prompt = f"count me {uuid.uuid4()}"
    for _ in range(2):  # the second is a cache hit: it counts, at no provider cost
        started = await chat.start(alice["auth"], model="openai/gpt-4o-mini", message=prompt)
        await chat.events(started["sessionId"])

    response = await chat.client.get("/api/usage", headers=alice["auth"])

    assert response.status_code == 200, response.text
    body = response.json()
    [model] = body["byModel"]
    assert (model["model"], model["provider"]) == ("openai/gpt-4o-mini", "openai")
    assert (model["requests"], model["cachedRequests"]) == (2, 1)
    assert model["completionTokens"] == 8
    assert body["total"]["requests"] == 2
    assert body["total"]["costUsd"] > 0
    assert sum(d["requests"] for d in body["byDay"]) == 2


async def test_an_identical_prompt_is_served_from_the_cache_token_by_token(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    prompt = f"cache me {uuid.uuid4()}"
    first = await chat.start(alice["auth"], model="openai/gpt-4o-mini", message=prompt)
    await chat.events(first["sessionId"])
    calls = len(chat.provider.requests)
    second = await chat.start(alice["auth"], model="openai/gpt-4o-mini", message=prompt)
    events = await chat.events(second["sessionId"])
    assert len(chat.provider.requests) == calls  # the provider was not asked again
    assert [d["delta"] for _, n, d in events if n == "token"] == ["Hello", ", ", "world", "!"]
    assert events[-1][2]["cached"] is True
    bypass = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=prompt, cache=False
    )
    events = await chat.events(bypass["sessionId"])
    assert events[-1][2]["cached"] is False
    assert len(chat.provider.requests) == calls + 1


async def test_a_start_asking_for_events_answers_the_reply_in_the_same_request(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    prompt = f"one request {uuid.uuid4()}"
    events = await chat.start_streaming(alice["auth"], model="openai/gpt-4o-mini", message=prompt)
    (_, first, session), rest = events[0], events[1:]
    assert first == "session"
    assert set(session) == {"sessionId", "chatId", "messageId", "expiresAt", "streamUrl"}
    assert session["streamUrl"] == f"/api/chat/stream?sessionId={session['sessionId']}"
    assert _text(rest) == "Hello, world!"
    assert rest[-1][1] == "done"
    assert rest[-1][2]["cached"] is False
    # the same reply, by its session, from the stream route: the same events with the same ids
    assert await chat.events(session["sessionId"]) == rest
    # resumable there: after the second token, exactly the rest
    after = await chat.events(session["sessionId"], last_event_id=rest[1][0])
    assert after == rest[2:]
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        messages = await uow.chats.list_messages(uuid.UUID(session["chatId"]))
    assert [m.content for m in messages] == [prompt, "Hello, world!"]
    assert str(messages[0].id) == session["messageId"]
    assert messages[-1].status is MessageStatus.COMPLETE
    # an identical prompt, asked the same way, comes from the cache, token by token
    calls = len(chat.provider.requests)
    again = await chat.start_streaming(alice["auth"], model="openai/gpt-4o-mini", message=prompt)
    assert len(chat.provider.requests) == calls
    assert [d["delta"] for _, n, d in again if n == "token"] == ["Hello", ", ", "world", "!"]
    assert again[-1][2]["cached"] is True


async def test_a_start_answers_json_unless_the_client_accepts_events(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    body = {"model": "openai/gpt-4o-mini", "message": f"which shape {uuid.uuid4()}"}
    for accept in ("application/json", "text/event-stream;q=0, application/json", "*/*"):
        headers = {**alice["auth"], "Accept": accept}
        response = await chat.client.post("/api/chat/start", json=body, headers=headers)
        assert response.status_code == 201, (accept, response.text)
        assert response.headers["content-type"].startswith("application/json"), accept
        assert set(response.json()) >= {"sessionId", "chatId", "messageId"}
    headers = {**alice["auth"], "Accept": "application/json;q=0.5, Text/Event-Stream"}
    async with chat.client.stream("POST", "/api/chat/start", json=body, headers=headers) as r:
        assert r.status_code == 201
        assert r.headers["content-type"].startswith("text/event-stream")


async def test_a_refused_start_asking_for_events_is_a_problem_not_a_stream(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    headers = {**alice["auth"], "Accept": "text/event-stream"}
    body = {"model": "openai/gpt-4o", "message": f"too dear {uuid.uuid4()}"}  # not in free
    refused = await chat.client.post("/api/chat/start", json=body, headers=headers)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    unknown = await chat.client.post(
        "/api/chat/start", json={"model": "nope/none", "message": "hi"}, headers=headers
    )
    assert unknown.status_code == 404, unknown.text
    listed = await chat.client.get("/api/chats", headers=alice["auth"])
    assert listed.json()["items"] == []  # nothing was saved


async def test_reconnecting_with_last_event_id_resumes_exactly_after_it(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(
        alice["auth"], model="dev/echo", message="one two three four five", cache=False
    )
    everything = await chat.events(started["sessionId"])
    first_two = await chat.events(started["sessionId"], limit=2)
    rest = await chat.events(started["sessionId"], last_event_id=first_two[-1][0])
    assert first_two + rest == everything
    assert _text(everything) == "one two three four five"
    # a second reader (another tab) sees the very same stream
    assert await chat.events(started["sessionId"]) == everything


async def test_a_client_resuming_after_the_final_event_is_told_to_stop(chat: Chat) -> None:
    """An EventSource reconnects whenever a stream closes, with the last id it saw: after the
    final event it gets 204, which makes it stop; before it, the rest of the reply."""
    alice = await chat.world.register("alice")
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"hi {uuid.uuid4()}"
    )
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done"
    url = f"/api/chat/stream?sessionId={started['sessionId']}"

    ended = await chat.client.get(url, headers={"Last-Event-ID": str(events[-1][0])})
    assert ended.status_code == 204
    assert ended.content == b""

    rest = await chat.events(started["sessionId"], last_event_id=events[-2][0])
    assert [(name, data) for _, name, data in rest] == [(events[-1][1], events[-1][2])]


async def test_another_users_session_or_chat_is_not_found(chat: Chat) -> None:
    alice, bob = await chat.world.register("alice"), await chat.world.register("bob")
    started = await chat.start(alice["auth"], model="dev/echo", message="private words")
    url = f"/api/chat/stream?sessionId={started['sessionId']}"
    assert (await chat.client.get(url, headers=bob["auth"])).status_code == 404
    unknown = await chat.client.get("/api/chat/stream?sessionId=" + "x" * 43)
    assert unknown.status_code == 404
    stop = await chat.client.post(
        f"/api/chat/sessions/{started['sessionId']}/stop", headers=bob["auth"]
    )
    assert stop.status_code == 404
    into_alices_chat = await chat.client.post(
        "/api/chat/start",
        json={"model": "dev/echo", "message": "hi", "chatId": started["chatId"]},
        headers=bob["auth"],
    )
    assert into_alices_chat.status_code == 404


async def test_a_malformed_last_event_id_is_a_422_before_the_stream_starts(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(alice["auth"], model="openai/gpt-4o-mini", message="hi")
    response = await chat.client.get(
        f"/api/chat/stream?sessionId={started['sessionId']}",
        headers={"Last-Event-ID": "not-an-id"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "not a reply event id" in response.json()["detail"]


async def test_a_message_too_long_for_the_model_is_a_422_that_saves_nothing(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    # 200,000 four-byte characters: some 200,000 tokens, over gpt-4o-mini's 128,000
    body = {"model": "openai/gpt-4o-mini", "message": "\U0001f433" * 200_000}
    response = await chat.client.post("/api/chat/start", json=body, headers=alice["auth"])

    assert response.status_code == 422
    assert "this model takes at most" in response.json()["detail"]
    listed = await chat.client.get("/api/chats", headers=alice["auth"])
    assert listed.json()["items"] == []


async def test_a_model_above_the_callers_plan_is_refused(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    response = await chat.client.post(
        "/api/chat/start", json={"model": "openai/gpt-4o", "message": "hi"}, headers=alice["auth"]
    )
    assert response.status_code == 403
    assert response.json()["code"] == "model_not_in_plan"
    hidden = await chat.client.post(
        "/api/chat/start",
        json={"model": "anthropic/claude-3-5-haiku", "message": "hi"},
        headers=alice["auth"],
    )
    assert hidden.status_code == 404  # no Anthropic key configured: the model is hidden


async def test_stop_closes_the_upstream_request_and_saves_the_partial_reply(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    # no finish reason: the answer is still being written when the stop comes
    pieces = openai_pieces(["partial", " words"], usage=None, done=False)[:-1]
    chat.provider.script(Reply(chunks=pieces, hold=True))
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"go on {uuid.uuid4()}"
    )
    first = await chat.events(started["sessionId"], limit=2)
    assert _text(first) == "partial words"
    stop = await chat.client.post(
        f"/api/chat/sessions/{started['sessionId']}/stop", headers=alice["auth"]
    )
    assert stop.status_code == 202
    events = await chat.events(started["sessionId"], last_event_id=first[-1][0])
    assert events[-1][1] == "done"
    assert events[-1][2]["status"] == "aborted"
    await asyncio.wait_for(chat.provider.disconnected.wait(), timeout=5)
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        reply = (await uow.chats.list_messages(uuid.UUID(started["chatId"])))[-1]
    assert reply.status is MessageStatus.ABORTED
    assert reply.content == "partial words"
    assert reply.usage.completion_tokens > 0


async def test_a_provider_error_after_the_first_token_ends_with_an_error_event(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    pieces = openai_pieces(["half"], usage=None, done=False)[:2]
    chat.provider.script(Reply(chunks=pieces, abort=True))
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"break {uuid.uuid4()}"
    )
    events = await chat.events(started["sessionId"])
    assert _text(events) == "half"
    assert events[-1][1] == "error"
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        reply = (await uow.chats.list_messages(uuid.UUID(started["chatId"])))[-1]
    assert reply.status is MessageStatus.FAILED
    assert reply.content == "half"


async def test_a_reply_whose_chat_is_deleted_meanwhile_ends_with_an_error_and_keeps_its_usage(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    gate = asyncio.Event()  # the provider sends the rest of the reply once the chat is gone
    pieces = openai_pieces(["first", " rest"], usage=(9, 2))
    chat.provider.script(Reply(chunks=pieces, gate=gate, gate_after=2))
    before = datetime.now(UTC)
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"doomed {uuid.uuid4()}"
    )
    first = await chat.events(started["sessionId"], limit=1)
    assert _text(first) == "first"

    deleted = await chat.client.delete(f"/api/chats/{started['chatId']}", headers=alice["auth"])
    assert deleted.status_code == 204
    gate.set()
    events = await chat.events(started["sessionId"], last_event_id=first[-1][0])

    assert _text(events) == " rest"
    assert events[-1][1] == "error"
    assert events[-1][2]["code"] == "chat_deleted"
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        usage = await uow.usage.totals(uuid.UUID(alice["user"]["id"]), since=before)
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (1, 9, 2)


@asynccontextmanager
async def _app(
    stack_urls: StackUrls, unique: str, provider: FakeProviderServer, **env: str
) -> AsyncIterator[Chat]:
    settings = _settings(
        stack_urls, unique, WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=provider.url,
        WHALLI_PROVIDER_MAX_ATTEMPTS="2", **env,
    )  # fmt: skip
    container = build_container(settings)
    app = build_app(settings, container)
    async with live_server(app) as client:
        yield Chat(World(client, container), provider, app)  # type: ignore[arg-type]


@asynccontextmanager
async def _anthropic_down(stack_urls: StackUrls, unique: str) -> AsyncIterator[Chat]:
    """The app with Anthropic unreachable (its fallback, OpenAI, on a fake provider)."""
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY="sk-ant-test",
            WHALLI_ANTHROPIC_BASE_URL="http://127.0.0.1:9",  # nothing listens there
        ) as chat,
    ):  # fmt: skip
        yield chat


async def _reply(chat: Chat, chat_id: str) -> Any:
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        return (await uow.chats.list_messages(uuid.UUID(chat_id)))[-1]


async def _until_final(chat: Chat, chat_id: str) -> Any:
    for _ in range(200):
        reply = await _reply(chat, chat_id)
        if reply.role is MessageRole.ASSISTANT and reply.status.is_final:
            return reply
        await asyncio.sleep(0.05)
    raise AssertionError("the reply never finished")


async def test_a_client_that_leaves_does_not_stop_the_reply_which_is_saved(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    slow = openai_pieces(["still", " here", " after", " you", " left"])
    chat.provider.script(Reply(chunks=slow, delay=0.05))
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"x {uuid.uuid4()}"
    )
    first = await chat.events(started["sessionId"], limit=1)  # then the client goes away
    assert first[0][1] == "token"
    reply = await _until_final(chat, started["chatId"])
    assert reply.status is MessageStatus.COMPLETE
    assert reply.content == "still here after you left"


async def test_an_abandoned_reply_is_stopped_when_configured(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider, WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S="0.3") as chat,
    ):
        alice = await chat.world.register("alice")
        unfinished = openai_pieces(["lonely"], usage=None, done=False)[:-1]  # no finish reason
        provider.script(Reply(chunks=unfinished, hold=True))
        started = await chat.start(
            alice["auth"], model="openai/gpt-4o-mini", message=f"y {uuid.uuid4()}"
        )
        await chat.events(started["sessionId"], limit=1)
        reply = await _until_final(chat, started["chatId"])
        assert reply.status is MessageStatus.ABORTED
        assert reply.content == "lonely"
        await asyncio.wait_for(provider.disconnected.wait(), timeout=5)


async def test_a_reply_started_on_one_api_instance_streams_from_another(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider) as one,
        _app(stack_urls, unique, provider) as other,
    ):
        alice = await one.world.register("alice")
        started = await one.start(
            alice["auth"], model="openai/gpt-4o-mini", message=f"z {uuid.uuid4()}"
        )
        here = await one.events(started["sessionId"])
        there = await other.events(started["sessionId"], headers=alice["auth"])
        assert there == here
        assert _text(there) == "Hello, world!"


async def test_an_idle_stream_gets_heartbeat_comments(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with (
        FakeProviderServer(openai_default()) as provider,
        _app(stack_urls, unique, provider, WHALLI_CHAT_HEARTBEAT_S="0.1") as chat,
    ):
        alice = await chat.world.register("alice")
        provider.script(Reply(chunks=openai_pieces(["late"]), first_delay=0.6))
        started = await chat.start(
            alice["auth"], model="openai/gpt-4o-mini", message=f"h {uuid.uuid4()}"
        )
        url = f"/api/chat/stream?sessionId={started['sessionId']}"
        comments = 0
        async with chat.client.stream("GET", url) as response:
            async for line in response.aiter_lines():
                comments += line.startswith(":")
                if line.startswith("event: done"):
                    break
        assert comments >= 2


async def test_the_catalog_fallback_answers_when_a_provider_keeps_failing(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with _anthropic_down(stack_urls, unique) as chat:
        alice = await chat.world.register("alice")
        started = await chat.start(
            alice["auth"], model="anthropic/claude-3-5-haiku", message=f"f {uuid.uuid4()}"
        )
        events = await chat.events(started["sessionId"])
        assert events[-1][1] == "done"
        assert _text(events) == "Hello, world!"
        reply = await _reply(chat, started["chatId"])
        assert reply.model == "openai/gpt-4o-mini"  # the catalog's fallback for haiku
        assert reply.provider == "openai"


async def test_a_fallbacks_reply_is_not_cached_as_the_model_asked_for(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """The next identical question goes to the model asked for again (here still down, so
    the fallback answers again), not to a cached answer of another model under its name."""
    async with _anthropic_down(stack_urls, unique) as chat:
        alice = await chat.world.register("alice")
        prompt = f"twice {uuid.uuid4()}"
        for _ in range(2):
            started = await chat.start(
                alice["auth"], model="anthropic/claude-3-5-haiku", message=prompt
            )
            events = await chat.events(started["sessionId"])
            assert (events[-1][1], events[-1][2]["cached"]) == ("done", False)
        assert len(chat.provider.requests) == 2


async def test_a_request_the_provider_refuses_as_invalid_fails_without_a_fallback(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    refusal = Reply(status=400, body=anthropic_error("invalid_request_error", "Bad request"))
    async with (
        FakeProviderServer(openai_default()) as provider,
        FakeProviderServer(anthropic_default()) as anthropic,
        _app(
            stack_urls, unique, provider, WHALLI_ANTHROPIC_API_KEY=API_KEY,
            WHALLI_ANTHROPIC_BASE_URL=anthropic.url,
        ) as chat,
    ):  # fmt: skip
        anthropic.script(refusal)
        alice = await chat.world.register("alice")
        started = await chat.start(
            alice["auth"], model="anthropic/claude-3-5-haiku", message=f"bad {uuid.uuid4()}"
        )
        events = await chat.events(started["sessionId"])
        assert events[-1][1] == "error"
        assert events[-1][2]["code"] == "provider_rejected_request"
        assert "HTTP 400: invalid_request_error): Bad request" in events[-1][2]["message"]
        assert provider.requests == []  # the fallback (gpt-4o-mini) was not asked
        reply = await _until_final(chat, started["chatId"])
        assert (reply.status, reply.model) == (MessageStatus.FAILED, "anthropic/claude-3-5-haiku")
        assert reply.error == events[-1][2]["message"]


async def test_a_refused_request_tells_the_user_the_providers_explanation(chat: Chat) -> None:
    said = "This model's maximum context length is 128000 tokens.\nPlease reduce the length."
    chat.provider.script(Reply(status=400, body=openai_error(said, "context_length_exceeded")))
    alice = await chat.world.register("alice")

    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"long {uuid.uuid4()}"
    )
    events = await chat.events(started["sessionId"])

    name, error = events[-1][1], events[-1][2]
    assert name == "error"
    assert error["code"] == "provider_rejected_request"
    assert error["message"] == (
        "The openai provider rejected the request (HTTP 400: context_length_exceeded): "
        "This model's maximum context length is 128000 tokens. Please reduce the length."
    )
    assert len(chat.provider.requests) == 1  # not retried
    reply = await _until_final(chat, started["chatId"])
    assert (reply.status, reply.content) == (MessageStatus.FAILED, "")
    assert reply.error == error["message"]


async def test_chat_metrics_are_exported(chat: Chat) -> None:
    alice = await chat.world.register("alice")
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"m {uuid.uuid4()}"
    )
    await chat.events(started["sessionId"])
    reply = await _until_final(chat, started["chatId"])
    rated = await chat.client.put(
        f"/api/chats/{started['chatId']}/messages/{reply.id}/feedback", json={"rating": "up"},
        headers=alice["auth"],
    )  # fmt: skip
    assert rated.status_code == 200, rated.text
    text = (await chat.client.get("/api/metrics")).text
    tokens = [
        line for line in text.splitlines()
        if line.startswith("whalli_chat_tokens_total{")
        and 'model="openai/gpt-4o-mini"' in line and 'kind="completion"' in line
    ]  # fmt: skip
    assert tokens
    assert float(tokens[0].rsplit(" ", 1)[1]) >= 4
    ratings = [
        line for line in text.splitlines()
        if line.startswith("whalli_chat_ratings_total{")
        and 'model="openai/gpt-4o-mini"' in line and 'rating="up"' in line
    ]  # fmt: skip
    assert ratings
    assert float(ratings[0].rsplit(" ", 1)[1]) >= 1
    assert alice["user"]["id"] not in text  # no user in a label
    for name in (
        "whalli_chat_cache_misses_total", "whalli_chat_ttft_seconds_bucket",
        "whalli_chat_reply_seconds_bucket", "whalli_sse_connections_active",
    ):  # fmt: skip
        assert name in text, name


async def test_sampling_params_of_a_start_reach_the_provider_and_bad_ones_are_400(
    chat: Chat,
) -> None:
    alice = await chat.world.register("alice")
    params = {"topP": 0.25, "stop": ["END"], "seed": 3, "presencePenalty": 0.5}
    started = await chat.start(
        alice["auth"], model="openai/gpt-4o-mini", message=f"p {uuid.uuid4()}", params=params
    )
    await chat.events(started["sessionId"])

    sent = chat.provider.requests[-1].body
    assert (sent["top_p"], sent["stop"], sent["seed"]) == (0.25, ["END"], 3)
    assert sent["presence_penalty"] == 0.5
    assert "frequency_penalty" not in sent
    for bad in ({"topP": 2}, {"stop": []}, {"seed": 2**64}, {"presencePenalty": -3}):
        refused = await chat.client.post(
            "/api/chat/start",
            json={"model": "dev/echo", "message": "hi", "params": bad},
            headers=alice["auth"],
        )
        assert refused.status_code == 400, (bad, refused.text)


async def test_an_archived_chat_leaves_the_list_and_a_new_message_brings_it_back(
    chat: Chat,
) -> None:
    """On the real stack: PATCH archives without moving the chat; the default list leaves it
    out, ``archived=true`` shows it; a message sent in it unarchives it (at the top)."""
    alice = await chat.world.register("alice")
    model = "openai/gpt-4o-mini"
    first = await chat.start(alice["auth"], model=model, message=f"One {uuid.uuid4()}")
    await chat.events(first["sessionId"])
    second = await chat.start(alice["auth"], model=model, message=f"Two {uuid.uuid4()}")
    await chat.events(second["sessionId"])

    async def listed(query: str = "") -> list[str]:
        response = await chat.client.get(f"/api/chats{query}", headers=alice["auth"])
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    url = f"/api/chats/{first['chatId']}"
    pinned = await chat.client.patch(url, json={"pinned": True}, headers=alice["auth"])
    assert pinned.json()["pinned"] is True
    assert await listed("?pinned=true") == [first["chatId"]]
    archived = await chat.client.patch(url, json={"archived": True}, headers=alice["auth"])
    assert archived.status_code == 200, archived.text
    assert (archived.json()["archived"], archived.json()["pinned"]) == (True, False)
    assert archived.json()["updatedAt"] == pinned.json()["updatedAt"]
    assert await listed() == [second["chatId"]]
    assert await listed("?archived=true") == [first["chatId"]]
    assert await listed("?pinned=true") == []

    again = await chat.start(alice["auth"], model=model, message="Back.", chatId=first["chatId"])
    await chat.events(again["sessionId"])

    assert await listed() == [first["chatId"], second["chatId"]]
    assert await listed("?archived=true") == []
    assert (await chat.client.get(url, headers=alice["auth"])).json()["archivedAt"] is None
