"""A hunt for defects in the fifteenth session's two changes, on the real stack:

- ``opening_reply`` / ``ReplyOpening``: a start or a regeneration leaves its unit of work before
  it awaits its session's store; anything failing after the launch cancels the generation and
  deletes the session. The session store is a ``RedisChatSessionStore`` subclass swapped in
  through the container (``ControlledSessions``) whose saves can be held or made to fail.
- ``dependency_order``: Litestar's concurrent resolution of a batch of dependencies replaced by
  a walk in turn (the app's routes, and a tiny Litestar app for generator dependencies).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import pytest
from dependency_injector import providers
from litestar import Litestar, get
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.integration.http.conftest import team_project
from tests.integration.http.test_chat_flow import Chat, _read_events
from tests.integration.http.test_identity_end_to_end import World, _settings
from tests.support.fake_providers import API_KEY, FakeProviderServer, Reply, openai_default
from tests.support.fake_providers import openai_stream as openai_pieces
from tests.support.live_server import live_server
from tests.support.resolve import resolved
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis.chat_sessions import RedisChatSessionStore
from whalli.container import build_container
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import MessageRole, MessageStatus
from whalli.domain.model.errors import ChatSessionNotFound, ServiceUnavailable
from whalli.entrypoints.http import dependency_order
from whalli.entrypoints.http.asgi import build_app
from whalli.entrypoints.http.generation import GenerationSupervisor
from whalli.entrypoints.http.security import CONTAINER_STATE_KEY

ECHO = "dev/echo"
MODEL = "openai/gpt-4o-mini"


class ControlledSessions(RedisChatSessionStore):
    """The app's session store, whose saves can be held (``gate``) or fail (``fail``)."""

    def __init__(self, client: Redis) -> None:
        super().__init__(client, local_copies_s=30.0)
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.waiting: list[str] = []  # sessions whose save is held
        self.tried: list[ChatSession] = []
        self.deleted: list[str] = []

    async def save(self, session: ChatSession, now: datetime) -> None:
        self.tried.append(session)
        if self.gate is not None:
            self.waiting.append(session.id)
            await self.gate.wait()
        if self.fail:
            raise ServiceUnavailable("Redis is unavailable.")
        await super().save(session, now)

    async def delete(self, session_id: str) -> None:
        self.deleted.append(session_id)
        await super().delete(session_id)


class OpeningChat(Chat):
    def __init__(
        self, world: World, provider: FakeProviderServer, sessions: ControlledSessions,
        generations: GenerationSupervisor,
    ) -> None:  # fmt: skip
        super().__init__(world, provider)
        self.sessions, self.generations = sessions, generations


@asynccontextmanager
async def _opening_app(
    stack_urls: StackUrls, unique: str, **env: str
) -> AsyncIterator[OpeningChat]:
    async with FakeProviderServer(openai_default()) as provider:
        settings = _settings(
            stack_urls, unique, WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=provider.url,
            WHALLI_PROVIDER_MAX_ATTEMPTS="1", **env,
        )  # fmt: skip
        container = build_container(settings)
        container.adapters.chat_sessions.override(
            providers.Singleton(ControlledSessions, client=container.gateways.redis)
        )
        app = build_app(settings, container)
        generations = app.state[CONTAINER_STATE_KEY].generations
        async with live_server(app) as client:
            sessions = await resolved(container.adapters.chat_sessions())
            assert isinstance(sessions, ControlledSessions)
            world = World(client, container)  # type: ignore[arg-type]
            yield OpeningChat(world, provider, sessions, generations)


@pytest.fixture
async def chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> AsyncIterator[OpeningChat]:
    async with _opening_app(stack_urls, unique) as chat:
        yield chat


# --- helpers -------------------------------------------------------------------------------------
async def settled(chat: OpeningChat) -> None:
    for _ in range(1000):
        if chat.generations.running == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("a reply generation never ended")


async def until(condition: Any, what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never: {what}")


def held_start(
    chat: OpeningChat, auth: dict[str, str], message: str, chat_id: str | None = None,
    *, model: str = ECHO,
) -> asyncio.Future[Any]:  # fmt: skip
    """A start posted while the session store holds its saves (``chat.sessions.gate``, set
    here if it is not): it answers once the gate opens."""
    if chat.sessions.gate is None:
        chat.sessions.gate = asyncio.Event()
    body = {"model": model, "message": message} | ({"chatId": chat_id} if chat_id else {})
    return asyncio.ensure_future(chat.client.post("/api/chat/start", json=body, headers=auth))


async def messages_of(chat: Chat, chat_id: str | uuid.UUID) -> list[Any]:
    uow = await resolved(chat.world.container.adapters.unit_of_work())
    async with uow:
        return list(await uow.chats.list_messages(uuid.UUID(str(chat_id))))


async def chat_ids(chat: Chat, auth: dict[str, str]) -> list[str]:
    listed = await chat.client.get("/api/chats", headers=auth)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    items = body["items"] if isinstance(body, dict) else body
    return [item["id"] for item in items]


async def exchange(chat: Chat, auth: dict[str, str], message: str, **body: Any) -> dict[str, Any]:
    started = await chat.start(auth, model=ECHO, message=message, **body)
    events = await chat.events(started["sessionId"])
    assert events[-1][1] == "done", events
    return started


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def no_session_left(chat: OpeningChat, session: ChatSession) -> None:
    with pytest.raises(ChatSessionNotFound):
        await RedisChatSessionStore.get(chat.sessions, session.id)
    assert session.reply_message_id is not None
    assert await chat.sessions.live_session_ids([session.reply_message_id]) == {}


def pending(messages: list[Any]) -> list[Any]:
    return [
        m for m in messages
        if m.role is MessageRole.ASSISTANT and m.status is MessageStatus.PENDING
    ]  # fmt: skip


# --- 1. a session store that fails after the unit of work ---------------------------------------
@pytest.mark.parametrize("where", ["new chat", "existing chat"])
async def test_a_start_whose_session_store_fails_is_a_503_leaving_no_session_nor_generation(
    chat: OpeningChat, where: str
) -> None:
    alice = await chat.world.register("alice")
    body: dict[str, Any] = {"model": ECHO, "message": "doomed start"}
    if where == "existing chat":
        body["chatId"] = (await exchange(chat, alice["auth"], "first"))["chatId"]
    chat.sessions.fail = True
    response = await chat.client.post("/api/chat/start", json=body, headers=alice["auth"])
    problem(response, 503)
    await settled(chat)
    session = chat.sessions.tried[-1]
    assert session.id in chat.sessions.deleted
    await no_session_left(chat, session)
    stream = await chat.client.get(f"/api/chat/stream?sessionId={session.id}")
    problem(stream, 404)


async def test_a_start_whose_session_store_fails_leaves_no_pending_reply(
    chat: OpeningChat,
) -> None:
    alice = await chat.world.register("alice")
    chat.sessions.fail = True
    response = await chat.client.post(
        "/api/chat/start", json={"model": ECHO, "message": "doomed new chat"},
        headers=alice["auth"],
    )  # fmt: skip
    problem(response, 503)
    await settled(chat)
    left = [m for cid in await chat_ids(chat, alice["auth"]) for m in await messages_of(chat, cid)]
    assert pending(left) == [], "a reply of the refused start is stuck pending"


async def test_a_chat_can_be_regenerated_after_a_start_in_it_failed_on_its_session_store(
    chat: OpeningChat,
) -> None:
    alice = await chat.world.register("alice")
    chat_id = (await exchange(chat, alice["auth"], "first"))["chatId"]
    chat.sessions.fail = True
    response = await chat.client.post(
        "/api/chat/start", json={"model": ECHO, "message": "second", "chatId": chat_id},
        headers=alice["auth"],
    )  # fmt: skip
    problem(response, 503)
    await settled(chat)
    chat.sessions.fail = False
    again = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id}, headers=alice["auth"]
    )
    assert again.status_code == 201, again.text


async def test_a_regeneration_whose_session_store_fails_keeps_the_old_reply(
    chat: OpeningChat,
) -> None:
    alice = await chat.world.register("alice")
    chat_id = (await exchange(chat, alice["auth"], "keep my answer"))["chatId"]
    before = await messages_of(chat, chat_id)
    chat.sessions.fail = True
    response = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id}, headers=alice["auth"]
    )
    problem(response, 503)
    await settled(chat)
    after = await messages_of(chat, chat_id)
    assert [(m.id, m.status) for m in after] == [(m.id, m.status) for m in before]


async def test_a_store_failing_while_the_provider_streams_closes_the_provider_request(
    chat: OpeningChat,
) -> None:
    """The launched generation is cancelled, not left running: its upstream request closes."""
    alice = await chat.world.register("alice")
    unfinished = openai_pieces(["never", " told"], usage=None, done=False)[:-1]  # no finish
    chat.provider.script(Reply(chunks=unfinished, hold=True))
    chat.sessions.fail = True
    answer = held_start(chat, alice["auth"], f"z {uuid.uuid4()}", model=MODEL)
    await until(lambda: chat.provider.requests and chat.sessions.waiting, "provider asked")
    chat.sessions.gate.set()
    problem(await answer, 503)
    await asyncio.wait_for(chat.provider.disconnected.wait(), timeout=10)
    await settled(chat)
    await no_session_left(chat, chat.sessions.tried[-1])


# --- 2. a slow session store: the unit of work is left, the chat stays consistent -------------
async def test_starts_waiting_for_their_session_store_hold_no_database_connection(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """With a pool of 2, four starts all reach their (held) session store, and a read of the
    chats answers meanwhile: none of them holds a connection while Redis is awaited."""
    async with _opening_app(stack_urls, unique, WHALLI_DATABASE_POOL_MAX="2") as chat:
        alice = await chat.world.register("alice")
        starts = [held_start(chat, alice["auth"], f"n{i}") for i in range(4)]
        await until(lambda: len(chat.sessions.waiting) == 4, "four saves held")
        listed = await asyncio.wait_for(chat.client.get("/api/chats", headers=alice["auth"]), 10)
        assert listed.status_code == 200
        chat.sessions.gate.set()
        answers = await asyncio.gather(*starts)
        assert [a.status_code for a in answers] == [201] * 4
        for a in answers:
            events = await chat.events(a.json()["sessionId"])
            assert events[-1][1] == "done"


async def test_a_reply_generated_before_its_session_is_stored_streams_and_is_saved(
    chat: OpeningChat,
) -> None:
    alice = await chat.world.register("alice")
    answer = held_start(chat, alice["auth"], "early bird words")
    await until(lambda: chat.sessions.waiting, "save held")
    await asyncio.sleep(0.3)  # the echo reply is generated meanwhile, waiting to be persisted
    chat_id = str(chat.sessions.tried[-1].chat_id)
    assert pending(await messages_of(chat, chat_id)), "persisted before its session was stored"
    chat.sessions.gate.set()
    started = (await answer).json()
    events = await chat.events(started["sessionId"])
    assert [n for _, n, _ in events][-1] == "done"
    await settled(chat)
    reply = (await messages_of(chat, chat_id))[-1]
    assert (reply.status, reply.content) == (MessageStatus.COMPLETE, "early bird words")


async def test_a_regeneration_while_a_start_awaits_its_session_store_is_409(
    chat: OpeningChat,
) -> None:
    alice = await chat.world.register("alice")
    chat_id = (await exchange(chat, alice["auth"], "first"))["chatId"]
    answer = held_start(chat, alice["auth"], "second", chat_id)
    await until(lambda: chat.sessions.waiting, "save held")
    regen = await chat.client.post(
        "/api/chat/regenerate", json={"chatId": chat_id}, headers=alice["auth"]
    )
    problem(regen, 409)
    chat.sessions.gate.set()
    started = await answer
    assert started.status_code == 201, started.text
    events = await chat.events(started.json()["sessionId"])
    assert events[-1][1] == "done"
    await settled(chat)
    statuses = [(m.role, m.status) for m in await messages_of(chat, chat_id)]
    assert statuses[-1] == (MessageRole.ASSISTANT, MessageStatus.COMPLETE)
    assert len(statuses) == 4


async def test_a_second_start_while_the_first_awaits_its_session_store_both_answer(
    chat: OpeningChat,
) -> None:
    alice = await chat.world.register("alice")
    chat_id = (await exchange(chat, alice["auth"], "first"))["chatId"]
    one = held_start(chat, alice["auth"], "alpha one", chat_id)
    await until(lambda: len(chat.sessions.waiting) == 1, "first save held")
    two = held_start(chat, alice["auth"], "beta two", chat_id)
    await until(lambda: len(chat.sessions.waiting) == 2, "second save held")
    chat.sessions.gate.set()
    answers = [await one, await two]
    for a, text in zip(answers, ["alpha one", "beta two"], strict=True):
        assert a.status_code == 201, a.text
        events = await chat.events(a.json()["sessionId"])
        assert "".join(d["delta"] for _, n, d in events if n == "token") == text
    await settled(chat)
    stored = await messages_of(chat, chat_id)
    assert [m.status for m in stored if m.role is MessageRole.ASSISTANT] == [
        MessageStatus.COMPLETE
    ] * 3


async def test_a_generation_cancelled_while_its_start_awaits_the_store_leaves_no_session(
    chat: OpeningChat,
) -> None:
    alice = await chat.world.register("alice")
    answer = held_start(chat, alice["auth"], "cut short")
    await until(lambda: chat.sessions.waiting, "save held")
    await asyncio.sleep(0.2)  # the echo generation now waits for `saved`
    for task in list(chat.generations._tasks):  # as shutdown does after its grace
        task.cancel()
    await settled(chat)
    chat.sessions.gate.set()
    response = await answer
    session = chat.sessions.tried[-1]
    if response.status_code == 201:  # answered: then its session must be readable
        assert (await chat.sessions.get(session.id)).id == session.id
        return
    assert session.reply_message_id is not None
    live = await chat.sessions.live_session_ids([session.reply_message_id])
    stuck = pending(await messages_of(chat, session.chat_id))
    assert (response.status_code, live, len(stuck)) == (503, {}, 0), response.text


# --- 3. the one-request start ------------------------------------------------------------------
@pytest.mark.parametrize("route", ["start", "regenerate"])
async def test_a_one_request_opening_whose_store_fails_is_a_problem_not_a_stream(
    chat: OpeningChat, route: str
) -> None:
    alice = await chat.world.register("alice")
    body: dict[str, Any] = {"model": ECHO, "message": "stream me"}
    if route == "regenerate":
        body = {"chatId": (await exchange(chat, alice["auth"], "first"))["chatId"]}
    chat.sessions.fail = True
    response = await chat.client.post(
        f"/api/chat/{route}", json=body,
        headers={**alice["auth"], "Accept": "text/event-stream"},
    )  # fmt: skip
    problem(response, 503)
    await settled(chat)
    await no_session_left(chat, chat.sessions.tried[-1])


async def test_a_one_request_start_with_a_slow_store_streams_the_whole_reply(
    chat: OpeningChat,
) -> None:
    alice = await chat.world.register("alice")
    chat.sessions.gate = asyncio.Event()
    headers = {**alice["auth"], "Accept": "text/event-stream"}

    async def one_request() -> list[Any]:
        async with chat.client.stream(
            "POST", "/api/chat/start", json={"model": ECHO, "message": "slow redis here"},
            headers=headers,
        ) as response:  # fmt: skip
            assert response.status_code == 201, await response.aread()
            return await _read_events(response, None)

    reading = asyncio.ensure_future(one_request())
    await until(lambda: chat.sessions.waiting, "save held")
    await asyncio.sleep(0.2)
    chat.sessions.gate.set()
    events = await asyncio.wait_for(reading, 20)
    names = [n for _, n, _ in events]
    assert names[0] == "session", names
    assert names[-1] == "done", names
    assert "".join(d["delta"] for _, n, d in events if n == "token") == "slow redis here"
    again = await chat.events(events[0][2]["sessionId"])  # readable by the stream route too
    assert again[-1][1] == "done"


# --- 4. dependencies resolved in turn ----------------------------------------------------------
async def test_the_app_resolves_dependencies_in_turn(chat: OpeningChat) -> None:
    assert dependency_order.installed()


async def test_errors_of_routes_with_a_principal_and_a_use_case_are_the_same_problems(
    chat: OpeningChat,
) -> None:
    """401 (guard), 403 (viewer), 404 (foreign chat), 422 (bad body) on routes whose
    dependencies (``principal`` + a use case) form one batch; a dependency's own 404 (an
    unknown OAuth provider, batched with ``start_oauth``)."""
    owner, vic = await chat.world.register("owner"), await chat.world.register("vic")
    project_id = await team_project(chat, owner, vic, "viewer")
    own = await exchange(chat, owner["auth"], "team", projectId=project_id)
    url = "/api/chat/regenerate"
    problem(await chat.client.post(url, json={"chatId": own["chatId"]}), 401)
    problem(await chat.client.post(url, json={"chatId": own["chatId"]}, headers=vic["auth"]), 403)
    eve = await chat.world.register("eve")
    problem(await chat.client.post(url, json={"chatId": own["chatId"]}, headers=eve["auth"]), 404)
    bad = await chat.client.post(url, json={"chatId": "nope"}, headers=owner["auth"])
    assert bad.status_code in (400, 422), bad.text
    problem(bad, bad.status_code)
    oauth = await chat.client.get("/api/auth/oauth/nosuch/authorize")
    problem(oauth, 404)


_log: list[str] = []


async def _generated() -> AsyncIterator[str]:
    _log.append("open")
    try:
        yield "gen"
    except Exception as e:
        _log.append(f"thrown {type(e).__name__}")
        raise
    else:
        _log.append("closed")


async def _plain() -> str:
    return "plain"


def _forbidden() -> str:
    raise PermissionDeniedException("no")


def _unauthorized() -> str:
    raise NotAuthorizedException("who?")


@get("/ok", sync_to_thread=False)
def _ok(gen: NamedDependency[str], plain: NamedDependency[str]) -> dict[str, str]:
    return {"gen": gen, "plain": plain}


@get("/boom", sync_to_thread=False)
def _boom(gen: NamedDependency[str], plain: NamedDependency[str]) -> None:
    raise ValueError("handler failed")


@get("/sibling", sync_to_thread=False)
def _sibling(
    gen: NamedDependency[str], forbidden: NamedDependency[str], unauthorized: NamedDependency[str]
) -> None:
    raise AssertionError("not reached")


def _tiny() -> Litestar:
    return Litestar(
        [_ok, _boom, _sibling],
        dependencies={
            "gen": Provide(_generated), "plain": Provide(_plain),
            "forbidden": Provide(_forbidden, sync_to_thread=False),
            "unauthorized": Provide(_unauthorized, sync_to_thread=False),
        },
    )  # fmt: skip


async def test_generator_dependencies_in_a_batch_are_cleaned_up_and_told_of_errors() -> None:
    dependency_order.install()
    assert dependency_order.installed()
    _log.clear()
    async with AsyncTestClient(app=_tiny()) as client:
        ok = await client.get("/ok")
        assert ok.json() == {"gen": "gen", "plain": "plain"}
        assert _log == ["open", "closed"]
        _log.clear()
        boom = await client.get("/boom")
        assert boom.status_code == 500
        assert _log == ["open", "thrown ValueError"]


async def test_a_failing_dependency_in_a_batch_answers_its_own_error() -> None:
    """A batch of three where two raise: the answer is one of the two errors (Litestar's
    resolver re-raised the group's first), never a 500."""
    dependency_order.install()
    async with AsyncTestClient(app=_tiny()) as client:
        for _ in range(5):
            response = await client.get("/sibling")
            assert response.status_code in (401, 403), response.text
