"""Hunt (s20): the real services and providers failing during chat flows, through the real app
and container. Postgres and Redis are reached through a loopback TCP proxy of the test's own
(``Cuttable``) that can refuse, cut or freeze the app's connections, so the shared test stack is
never stopped; providers are the loopback fakes (or a raw socket server of the test's own).

The standard: a bad condition gives a clear error (503/4xx problem documents on /api, OpenAI's
``{"error": ...}`` on /v1), loses nothing, leaves no half-written rows, never wedges the
process; a reply stream that cannot go on ends with an ``error`` event and its message ends
``failed`` rather than staying ``pending``/``streaming``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.integration.http.test_chat_flow import Chat, _app
from tests.integration.http.test_identity_end_to_end import World, _settings
from tests.support.fake_providers import (
    API_KEY,
    FakeProviderServer,
    Reply,
    openai_default,
    openai_stream,
)
from tests.support.live_server import live_server
from whalli.adapters.ai._streaming import CHARS_PER_TOKEN
from whalli.adapters.embedded.stack import StackUrls
from whalli.container import build_container
from whalli.entrypoints.http.asgi import build_app

MODEL = "openai/gpt-4o-mini"
EventList = list[tuple[str | None, str, dict[str, Any]]]

# Short deadlines for the stalled-Postgres tests: one statement, and a free connection, 2 s.
STALL_TIMEOUTS = {"WHALLI_DATABASE_IO_TIMEOUT_S": "2", "WHALLI_DATABASE_ACQUIRE_TIMEOUT_S": "2"}


# --- a cuttable loopback proxy in front of a real service ------------------------------------
class Cuttable:
    """A TCP proxy on 127.0.0.1 in front of ``host:port``. ``mode``: ``pass`` (forward),
    ``drop`` (accept new connections and close them at once), ``hang`` (accept and never
    answer). ``cut()`` aborts every open connection; ``freeze()`` stops forwarding on every
    connection, open or new (bytes are held), until ``thaw()``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.mode = "pass"
        self._server: asyncio.Server | None = None
        self._pipes: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thawed = asyncio.Event()
        self._thawed.set()

    @property
    def listen_port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, original: str) -> str:
        parts = urlsplit(original)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.listen_port}"
        return urlunsplit(
            parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
        )

    async def __aenter__(self) -> Cuttable:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.thaw()
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def upstream_ports(self) -> list[int]:
        """Our side's port of each open connection to the service (to find its backends)."""
        return sorted(
            upstream.get_extra_info("sockname")[1]
            for _, upstream in self._pipes
            if upstream is not None and not upstream.is_closing()
        )

    def cut(self) -> None:
        for client, upstream in list(self._pipes):
            client.transport.abort()
            if upstream is not None:
                upstream.transport.abort()
        self._pipes.clear()

    def freeze(self) -> None:
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.mode == "drop":
                writer.transport.abort()
                return
            if self.mode == "hang":
                pipe = (writer, None)
                self._pipes.add(pipe)
                with contextlib.suppress(Exception):
                    while await reader.read(65536):
                        pass
                return
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
            pipe2 = (writer, up_writer)
            self._pipes.add(pipe2)
            await asyncio.gather(
                self._pump(reader, up_writer), self._pump(up_reader, writer),
                return_exceptions=True,
            )  # fmt: skip
            self._pipes.discard(pipe2)
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._thawed.wait()
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


@asynccontextmanager
async def proxied(
    stack_urls: StackUrls, unique: str, *, pg: bool = False, redis: bool = False, **env: str
) -> AsyncIterator[tuple[Chat, Cuttable | None, Cuttable | None]]:
    """The app (with ``env``) on the fake OpenAI provider, its Postgres and/or Redis reached
    through a ``Cuttable`` each."""
    async with contextlib.AsyncExitStack() as stack:
        pg_proxy = redis_proxy = None
        if pg:
            pg_proxy = await stack.enter_async_context(
                Cuttable(*_host_port(stack_urls.database_url))
            )
            env["WHALLI_DATABASE_URL"] = pg_proxy.url(stack_urls.database_url)
        if redis:
            redis_proxy = await stack.enter_async_context(
                Cuttable(*_host_port(stack_urls.redis_url))
            )
            env["WHALLI_REDIS_URL"] = redis_proxy.url(stack_urls.redis_url)
        provider = await stack.enter_async_context(FakeProviderServer(openai_default()))
        chat = await stack.enter_async_context(_app(stack_urls, unique, provider, **env))
        yield chat, pg_proxy, redis_proxy


async def _messages(stack_urls: StackUrls, chat_id: str) -> list[tuple[str, str, str]]:
    """(role, status, content) of a chat's messages, read directly (not through the app)."""
    async with await psycopg.AsyncConnection.connect(stack_urls.database_url) as conn:
        rows = await (
            await conn.execute(
                "SELECT role, status, content FROM messages WHERE chat_id = %s ORDER BY id",
                [chat_id],
            )
        ).fetchall()
    return [(str(r), str(s), str(c)) for r, s, c in rows]


async def _chats_of(stack_urls: StackUrls, user_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(stack_urls.database_url) as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM chats WHERE user_id = %s", [user_id])
        ).fetchone()
    assert row is not None
    return int(row[0])


async def _events(chat: Chat, session_id: str, timeout: float = 15.0) -> EventList:
    async with asyncio.timeout(timeout):
        return await chat.events(session_id)


def _is_problem(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    assert response.json()["status"] == status


async def _until_final(
    stack_urls: StackUrls, chat_id: str, seconds: float = 15.0
) -> tuple[str, str]:
    for _ in range(int(seconds / 0.1)):
        rows = await _messages(stack_urls, chat_id)
        if rows and rows[-1][0] == "assistant" and rows[-1][1] not in ("pending", "streaming"):
            return rows[-1][1], rows[-1][2]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the reply never finished: {await _messages(stack_urls, chat_id)}")


class RawProvider:
    """A loopback server answering every connection with ``answer(reader, writer)``: for what
    no HTTP server would send."""

    def __init__(self, answer: Any) -> None:
        self._answer = answer
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> RawProvider:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
            self._tasks.discard(task)


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@asynccontextmanager
async def raw_app(
    stack_urls: StackUrls, unique: str, answer: Any, **env: str
) -> AsyncIterator[tuple[Chat, RawProvider]]:
    async with RawProvider(answer) as raw, FakeProviderServer(openai_default()) as unused:
        settings = _settings(
            stack_urls, unique, WHALLI_OPENAI_API_KEY=API_KEY, WHALLI_OPENAI_BASE_URL=raw.url,
            WHALLI_PROVIDER_MAX_ATTEMPTS="2", **env,
        )  # fmt: skip
        container = build_container(settings)
        async with live_server(build_app(settings, container)) as client:
            yield Chat(World(client, container), unused), raw  # type: ignore[arg-type]


class LiveReader:
    """``GET /api/chat/stream`` read in the background: its events so far (``events``), and a
    wait for the one that satisfies a condition."""

    def __init__(self, chat: Chat, session_id: str) -> None:
        self._chat, self._session_id = chat, session_id
        self.events: EventList = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveReader:
        self._task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        url = f"/api/chat/stream?sessionId={self._session_id}"
        async with self._chat.client.stream("GET", url) as response:
            assert response.status_code == 200
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "data" in fields:
                        event = (fields.get("id"), fields.get("event", "message"))
                        self.events.append((*event, json.loads(fields["data"])))
                        self._changed.set()
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")

    async def until(self, test: Any, timeout: float = 15.0) -> EventList:
        async with asyncio.timeout(timeout):
            while not test(self.events):
                self._changed.clear()
                await self._changed.wait()
        return self.events

    async def final(self, timeout: float = 15.0) -> EventList:
        return await self.until(lambda es: es and es[-1][1] in ("done", "error"), timeout)


def _text(events: EventList) -> str:
    return "".join(data["delta"] for _, name, data in events if name == "token")


def _start_body(**more: Any) -> dict[str, Any]:
    return {"model": MODEL, "message": f"hello {uuid.uuid4()}", **more}


# --- Redis ----------------------------------------------------------------------------------------
async def test_s20f_redis_refusing_at_start_is_a_503_problem_leaving_no_chat_then_recovers(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique, redis=True) as (chat, _, redis):
        assert redis is not None
        alice = await chat.world.register("alice")
        redis.mode = "drop"
        redis.cut()
        refused = await chat.client.post(
            "/api/chat/start", json=_start_body(), headers=alice["auth"]
        )
        _is_problem(refused, 503)
        assert refused.json()["code"] == "service_unavailable"
        assert await _chats_of(stack_urls, alice["user"]["id"]) == 0  # nothing half-written

        redis.mode = "pass"
        started = await chat.start(alice["auth"], **_start_body())
        events = await _events(chat, started["sessionId"])
        assert events[-1][1] == "done"
        assert await _until_final(stack_urls, started["chatId"]) == ("complete", "Hello, world!")
        assert await _chats_of(stack_urls, alice["user"]["id"]) == 1


async def test_s20f_redis_frozen_at_start_answers_a_503_problem_and_leaves_no_chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """A Redis that accepts but never answers (a hung server, a half-open connection)."""
    async with proxied(stack_urls, unique, redis=True) as (chat, _, redis):
        assert redis is not None
        alice = await chat.world.register("alice")
        warm = await chat.start(alice["auth"], **_start_body())
        await _events(chat, warm["sessionId"])
        redis.freeze()
        async with asyncio.timeout(25):  # a hang fails here instead of wedging the run
            refused = await chat.client.post(
                "/api/chat/start", json=_start_body(), headers=alice["auth"]
            )
        _is_problem(refused, 503)
        assert await _chats_of(stack_urls, alice["user"]["id"]) == 1  # the warm-up's only

        redis.thaw()
        redis.cut()
        started = await chat.start(alice["auth"], **_start_body())
        assert (await _events(chat, started["sessionId"]))[-1][1] == "done"


async def test_s20f_redis_lost_mid_reply_the_reader_gets_it_all_and_it_is_saved(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique, redis=True) as (chat, _, redis):
        assert redis is not None
        alice = await chat.world.register("alice")
        gate = asyncio.Event()
        pieces = openai_stream(["one", " two", " three"])
        chat.provider.script(Reply(chunks=pieces, gate=gate, gate_after=2))
        started = await chat.start(alice["auth"], **_start_body())
        async with LiveReader(chat, started["sessionId"]) as reader:
            await reader.until(lambda es: len(es) >= 1)
            redis.mode = "drop"
            redis.cut()
            gate.set()
            events = await reader.final()
        assert [name for _, name, _ in events] == ["token"] * 3 + ["done"]
        assert _text(events) == "one two three"
        assert await _until_final(stack_urls, started["chatId"]) == ("complete", "one two three")


async def test_s20f_redis_stalled_mid_reply_the_reader_gets_it_all_and_it_is_saved(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """A Redis that stops answering (not refusing) while a reply streams: its writes time out
    behind the local reader, and the final event does not wait on them for ever."""
    async with proxied(stack_urls, unique, redis=True) as (chat, _, redis):
        assert redis is not None
        alice = await chat.world.register("alice")
        gate = asyncio.Event()
        pieces = openai_stream(["one", " two", " three"])
        chat.provider.script(Reply(chunks=pieces, gate=gate, gate_after=2))
        started = await chat.start(alice["auth"], **_start_body())
        async with LiveReader(chat, started["sessionId"]) as reader:
            await reader.until(lambda es: len(es) >= 1)
            redis.freeze()
            gate.set()
            try:
                events = await reader.final()
            finally:
                redis.thaw()
                redis.cut()
        assert [name for _, name, _ in events] == ["token"] * 3 + ["done"]
        assert await _until_final(stack_urls, started["chatId"]) == ("complete", "one two three")
        again = await chat.start(alice["auth"], **_start_body())
        assert (await _events(chat, again["sessionId"]))[-1][1] == "done"


async def test_s20f_with_redis_down_stop_and_stream_are_503_problems_and_v1_still_answers(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """The rate limiter fails open and the prompt cache is a miss: /v1 needs no Redis."""
    async with proxied(stack_urls, unique, redis=True) as (chat, _, redis):
        assert redis is not None
        alice = await chat.world.register("alice")
        redis.mode = "drop"
        redis.cut()
        stop = await chat.client.post("/api/chat/sessions/abcdef/stop", headers=alice["auth"])
        _is_problem(stop, 503)
        stream = await chat.client.get("/api/chat/stream?sessionId=abcdef")
        _is_problem(stream, 503)

        body = {"model": MODEL, "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}]}
        whole = await chat.client.post("/v1/chat/completions", json=body, headers=alice["auth"])
        assert whole.status_code == 200, whole.text
        assert whole.json()["choices"][0]["message"]["content"] == "Hello, world!"
        streamed = await chat.client.post(
            "/v1/chat/completions", json={**body, "stream": True}, headers=alice["auth"]
        )
        assert streamed.status_code == 200, streamed.text
        assert streamed.text.rstrip().endswith("data: [DONE]")


async def test_s20f_a_reply_replayed_after_a_redis_blip_has_the_text_that_was_saved(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique, redis=True) as (chat, _, redis):
        assert redis is not None
        alice = await chat.world.register("alice")
        gate = asyncio.Event()
        pieces = openai_stream(["one", " two", " three", " four"])
        chat.provider.script(Reply(chunks=pieces, gate=gate, gate_after=2, delay=0.2))
        started = await chat.start(alice["auth"], **_start_body())
        async with LiveReader(chat, started["sessionId"]) as reader:
            await reader.until(lambda es: len(es) >= 1)  # "one", in Redis too
            redis.mode = "drop"  # Redis goes away for the next token only
            redis.cut()
            gate.set()
            await reader.until(lambda es: len(es) >= 2)
            await asyncio.sleep(0.05)
            redis.mode = "pass"
            live = await reader.final()
        assert _text(live) == "one two three four"  # the reader here missed nothing
        assert await _until_final(stack_urls, started["chatId"]) == (
            "complete", "one two three four",
        )  # fmt: skip

        # A page reloaded now (or a reader in another API process) replays it from Redis.
        try:
            replayed = await _events(chat, started["sessionId"], timeout=8)
        except TimeoutError:
            replayed = []
        assert replayed
        assert replayed[-1][1] == "done"
        assert _text(replayed) == "one two three four"


# --- Postgres -------------------------------------------------------------------------------------
async def _terminate(stack_urls: StackUrls, proxy: Cuttable) -> int:
    """pg_terminate_backend on the backends behind ``proxy`` (the app's own only): how many."""
    async with await psycopg.AsyncConnection.connect(
        stack_urls.database_url, autocommit=True
    ) as conn:
        rows = await (
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE client_port = ANY(%s) AND pid <> pg_backend_pid()",
                [proxy.upstream_ports],
            )
        ).fetchall()
    return len(rows)


async def test_s20f_the_apps_connections_killed_before_the_final_write_the_reply_is_saved(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique, pg=True) as (chat, pg, _):
        assert pg is not None
        alice = await chat.world.register("alice")
        gate = asyncio.Event()
        chat.provider.script(Reply(chunks=openai_stream(["one", " two"]), gate=gate, gate_after=2))
        started = await chat.start(alice["auth"], **_start_body())
        async with LiveReader(chat, started["sessionId"]) as reader:
            await reader.until(lambda es: len(es) >= 1)
            assert await _terminate(stack_urls, pg) >= 1
            gate.set()
            events = await reader.final()
        assert events[-1][1] == "done", events[-1]
        assert await _until_final(stack_urls, started["chatId"]) == ("complete", "one two")
        listed = await chat.client.get("/api/chats", headers=alice["auth"])
        assert listed.status_code == 200, listed.text


async def test_s20f_postgres_gone_for_two_seconds_at_the_final_write_the_reply_is_saved(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique, pg=True) as (chat, pg, _):
        assert pg is not None
        alice = await chat.world.register("alice")
        gate = asyncio.Event()
        chat.provider.script(Reply(chunks=openai_stream(["one", " two"]), gate=gate, gate_after=2))
        started = await chat.start(alice["auth"], **_start_body())
        async with LiveReader(chat, started["sessionId"]) as reader:
            await reader.until(lambda es: len(es) >= 1)
            pg.mode = "drop"
            pg.cut()
            gate.set()
            await asyncio.sleep(2)
            pg.mode = "pass"
            events = await reader.final(timeout=18)
        assert events[-1][1] == "done", events[-1]
        assert await _until_final(stack_urls, started["chatId"]) == ("complete", "one two")


async def test_s20f_postgres_refusing_at_start_is_a_503_problem_and_calls_no_provider(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique, pg=True) as (chat, pg, _):
        assert pg is not None
        alice = await chat.world.register("alice")
        pg.mode = "drop"
        pg.cut()
        try:
            refused = await chat.client.post(
                "/api/chat/start", json=_start_body(), headers=alice["auth"]
            )
        finally:
            pg.mode = "pass"
        _is_problem(refused, 503)
        assert chat.provider.requests == []  # nothing was generated for a start that failed
        assert await _chats_of(stack_urls, alice["user"]["id"]) == 0


async def test_s20f_after_a_postgres_outage_the_next_request_works_once_it_is_back(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique, pg=True) as (chat, pg, _):
        assert pg is not None
        alice = await chat.world.register("alice")
        assert (await chat.client.get("/api/chats", headers=alice["auth"])).status_code == 200
        loop = asyncio.get_running_loop()
        down_at = loop.time()
        pg.mode = "drop"
        pg.cut()
        during = await chat.client.get("/api/chats", headers=alice["auth"])
        _is_problem(during, 503)  # waits for the pool's acquire timeout (10 s)
        # psycopg_pool retries after d, 2d, 4d, 8d, 16d (d = 1 s +-10%): its 5th attempt comes
        # 13.5-16.5 s after the cut, its 6th 28-34 s after. Postgres comes back between them.
        await asyncio.sleep(max(0.0, down_at + 17.4 - loop.time()))
        pg.mode = "pass"  # Postgres is back: ask at once
        after = await chat.client.get("/api/chats", headers=alice["auth"])
        assert after.status_code == 200, after.text


# --- providers ------------------------------------------------------------------------------------
async def _no_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)  # reads the request, never answers


async def _not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(3600)


async def _bad_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(SSE_HEAD + chunk(b"data: {not json\n\n"))
    await writer.drain()
    await asyncio.sleep(3600)


async def _silent_after_a_token(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    first = openai_stream(["partial"], usage=None, done=False)[:2]
    writer.write(SSE_HEAD + b"".join(chunk(p) for p in first))
    await writer.drain()
    await asyncio.sleep(3600)


async def _reset_after_a_token(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    first = openai_stream(["partial"], usage=None, done=False)[:2]
    writer.write(SSE_HEAD + b"".join(chunk(p) for p in first))
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()


async def _endless_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    first = openai_stream(["partial"], usage=None, done=False)[:2]
    writer.write(SSE_HEAD + b"".join(chunk(p) for p in first))
    while True:  # one line that never ends
        writer.write(chunk(b"x" * 65536))
        await writer.drain()
        await asyncio.sleep(0.01)


PROVIDER_FAILURES = {
    "no answer at all": (_no_answer, ""),
    "not HTTP": (_not_http, ""),
    "an event that is not JSON": (_bad_json, ""),
    "silence after a token": (_silent_after_a_token, "partial"),
    "a reset after a token": (_reset_after_a_token, "partial"),
    "an endless line after a token": (_endless_line, "partial"),
}


@pytest.mark.parametrize("failure", list(PROVIDER_FAILURES))
async def test_s20f_a_provider_failing_ends_the_stream_with_an_error_and_a_failed_reply(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, failure: str
) -> None:
    answer, kept = PROVIDER_FAILURES[failure]
    async with raw_app(
        stack_urls, unique, answer,
        WHALLI_PROVIDER_FIRST_TOKEN_TIMEOUT_S="1", WHALLI_PROVIDER_IDLE_TIMEOUT_S="1",
    ) as (chat, _):  # fmt: skip
        alice = await chat.world.register("alice")
        started = await chat.start(alice["auth"], **_start_body())
        events = await _events(chat, started["sessionId"])
        assert events[-1][1] == "error", events
        assert events[-1][2]["code"] == "provider_error"
        assert _text(events) == kept
        assert await _until_final(stack_urls, started["chatId"]) == ("failed", kept)
        # the app goes on serving
        assert (await chat.client.get("/api/chats", headers=alice["auth"])).status_code == 200


async def test_s20f_a_v1_stream_whose_provider_goes_silent_ends_with_an_openai_error(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with raw_app(
        stack_urls, unique, _silent_after_a_token,
        WHALLI_PROVIDER_FIRST_TOKEN_TIMEOUT_S="1", WHALLI_PROVIDER_IDLE_TIMEOUT_S="1",
    ) as (chat, _):  # fmt: skip
        alice = await chat.world.register("alice")
        body = {
            "model": MODEL, "stream": True,
            "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}],
        }  # fmt: skip
        async with asyncio.timeout(15):
            response = await chat.client.post(
                "/v1/chat/completions", json=body, headers=alice["auth"]
            )
        assert response.status_code == 200, response.text
        data = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert '"partial"' in data[0] + data[1]
        last = json.loads(data[-1])
        assert set(last) == {"error"}, last
        assert last["error"]["message"]


async def _endless_tokens(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    opening, token = openai_stream(["loop " * 50], usage=None, done=False)[:2]
    writer.write(SSE_HEAD + chunk(opening))
    while True:  # a runaway generation (an OpenAI-compatible server without a length cap)
        writer.write(chunk(token))
        await writer.drain()
        await asyncio.sleep(0.002)


async def test_s20f_a_never_ending_provider_stream_is_cut_at_the_models_output_cap(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    # gpt-4o-mini's max_output_tokens, at the adapters' generous characters per token
    cap_chars = 16_384 * CHARS_PER_TOKEN
    async with raw_app(stack_urls, unique, _endless_tokens) as (chat, _):
        alice = await chat.world.register("alice")
        started = await chat.start(alice["auth"], **_start_body())
        async with LiveReader(chat, started["sessionId"]) as reader:
            try:
                await reader.until(
                    lambda es: (es and es[-1][1] in ("done", "error")) or len(_text(es)) > cap_chars
                )
            finally:  # stop the runaway reply either way, so the app shuts down at once
                stop = f"/api/chat/sessions/{started['sessionId']}/stop"
                await chat.client.post(stop, headers=alice["auth"])
                await reader.final()
            relayed = _text(reader.events)
        await _until_final(stack_urls, started["chatId"])
        assert len(relayed) <= cap_chars, f"{len(relayed)} characters relayed, and counting"


async def test_s20f_a_reader_in_another_process_rides_out_a_redis_blink(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Process A generates the reply; process B serves its reader from Redis, and loses Redis
    for 2 s while the reply goes on (A's Redis stays up). The reply completes and is saved;
    B's reader should get it all (or at least a final event), not a torn response."""
    async with (
        proxied(stack_urls, unique) as (chat_a, _, _),
        proxied(stack_urls, unique, redis=True) as (chat_b, _, redis),
    ):
        assert redis is not None
        alice = await chat_a.world.register("alice")
        gate = asyncio.Event()
        pieces = openai_stream(["one", " two"])
        chat_a.provider.script(Reply(chunks=pieces, gate=gate, gate_after=2))
        started = await chat_a.start(alice["auth"], **_start_body())

        async def blink() -> None:
            redis.mode = "drop"
            redis.cut()
            await asyncio.sleep(2)
            redis.mode = "pass"
            gate.set()

        events: EventList = []
        torn: Exception | None = None
        blinking: asyncio.Future[None] | None = None
        url = f"/api/chat/stream?sessionId={started['sessionId']}"
        try:
            async with asyncio.timeout(15), chat_b.client.stream("GET", url) as response:
                assert response.status_code == 200
                fields: dict[str, str] = {}
                async for line in response.aiter_lines():
                    if line == "" and "data" in fields:
                        data = json.loads(fields["data"])
                        events.append((fields.get("id"), fields["event"], data))
                        if blinking is None:
                            blinking = asyncio.ensure_future(blink())
                        if events[-1][1] in ("done", "error"):
                            break
                    if line == "":
                        fields = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except Exception as e:  # the response torn
            torn = e
        finally:
            if blinking is not None:
                await blinking
            gate.set()
            redis.mode = "pass"
        assert await _until_final(stack_urls, started["chatId"]) == ("complete", "one two")
        assert torn is None, repr(torn)
        assert events[-1][1] == "done", events
        assert _text(events) == "one two"


async def test_s20f_redis_refusing_a_regeneration_with_an_edit_leaves_the_chat_as_it_was(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique, redis=True) as (chat, _, redis):
        assert redis is not None
        alice = await chat.world.register("alice")
        started = await chat.start(alice["auth"], **_start_body())
        await _events(chat, started["sessionId"])
        url = f"/api/chats/{started['chatId']}"
        before = (await chat.client.get(url, headers=alice["auth"])).json()
        rows = await _messages(stack_urls, started["chatId"])

        redis.mode = "drop"
        redis.cut()
        body = {"chatId": started["chatId"], "message": "edited question"}
        refused = await chat.client.post("/api/chat/regenerate", json=body, headers=alice["auth"])
        _is_problem(refused, 503)
        redis.mode = "pass"

        assert await _messages(stack_urls, started["chatId"]) == rows
        after = (await chat.client.get(url, headers=alice["auth"])).json()
        assert after["messages"] == before["messages"]
        again = await chat.client.post("/api/chat/regenerate", json=body, headers=alice["auth"])
        assert again.status_code == 201, again.text
        assert (await _events(chat, again.json()["sessionId"]))[-1][1] == "done"


async def test_s20f_a_postgres_that_stops_answering_gives_a_503_and_a_final_event(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    """Postgres stalls (a frozen server, a half-open connection after a network cut): the
    bytes the app sends get no answer. A request should get its 503 and a reply being
    written its ``reply_not_saved`` error, not wait for ever."""
    async with proxied(stack_urls, unique, pg=True, **STALL_TIMEOUTS) as (chat, pg, _):
        assert pg is not None
        alice = await chat.world.register("alice")
        gate = asyncio.Event()
        chat.provider.script(Reply(chunks=openai_stream(["one", " two"]), gate=gate, gate_after=2))
        started = await chat.start(alice["auth"], **_start_body())
        async with LiveReader(chat, started["sessionId"]) as reader:
            await reader.until(lambda es: len(es) >= 1)
            pg.freeze()
            gate.set()

            async def listed() -> int:
                response = await chat.client.get("/api/chats", headers=alice["auth"])
                return response.status_code

            listing = asyncio.ensure_future(listed())
            with contextlib.suppress(TimeoutError):
                await reader.final(timeout=18)
            status = await asyncio.wait_for(listing, 1) if listing.done() else None
            listing.cancel()
            ended = reader.events[-1][1] in ("done", "error")
            pg.thaw()  # what was held goes through: the app goes on
        assert status == 503, "GET /api/chats still waiting after 18 s"
        assert ended, f"no final event after 18 s: {reader.events}"


async def test_s20f_a_request_while_postgres_stalls_is_a_503_problem_not_a_hang(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique, pg=True, **STALL_TIMEOUTS) as (chat, pg, _):
        assert pg is not None
        alice = await chat.world.register("alice")
        await asyncio.sleep(1.5)  # the pool's connection idles: its next checkout pings it
        pg.freeze()
        try:
            async with asyncio.timeout(18):
                response = await chat.client.get("/api/chats", headers=alice["auth"])
        except TimeoutError:
            response = None
        finally:
            pg.thaw()
        assert response is not None, "GET /api/chats still waiting after 18 s"
        _is_problem(response, 503)


async def _one_huge_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    first = openai_stream(["partial"], usage=None, done=False)[:2]
    writer.write(SSE_HEAD + b"".join(chunk(p) for p in first))
    writer.write(chunk(b'data: {"choices": [{"index": 0, "delta": {"content": "'))
    for _ in range(1024):  # 64 MiB of one line that never ends
        writer.write(chunk(b"x" * 65536))
        await writer.drain()
    await asyncio.sleep(3600)


async def test_s20f_a_provider_line_far_too_long_fails_the_reply_instead_of_being_buffered(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with raw_app(
        stack_urls, unique, _one_huge_line, WHALLI_PROVIDER_IDLE_TIMEOUT_S="120"
    ) as (chat, _):
        alice = await chat.world.register("alice")
        started = await chat.start(alice["auth"], **_start_body())
        async with LiveReader(chat, started["sessionId"]) as reader:
            with contextlib.suppress(TimeoutError):
                await reader.final(timeout=12)
            events = list(reader.events)
            stop = f"/api/chat/sessions/{started['sessionId']}/stop"
            await chat.client.post(stop, headers=alice["auth"])  # ends it either way
            await reader.final()
        assert events[-1][1] == "error", f"still buffering after 12 s: {events}"
        assert await _until_final(stack_urls, started["chatId"]) == ("failed", "partial")


async def test_s20f_a_provider_reporting_absurd_usage_still_gets_its_complete_reply_saved(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique) as (chat, _, _):
        alice = await chat.world.register("alice")
        absurd = Reply(chunks=openai_stream(["fine", " text"], usage=(10**20, 5)))
        chat.provider.script(absurd, absurd)
        started = await chat.start(alice["auth"], **_start_body())
        events = await _events(chat, started["sessionId"])
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}]}
        v1 = await chat.client.post("/v1/chat/completions", json=body, headers=alice["auth"])

        assert _text(events) == "fine text"  # what the user was shown
        assert await _until_final(stack_urls, started["chatId"]) == ("complete", "fine text")
        assert events[-1][1] == "done", events[-1]
        # /v1 answers 422 invalid_request_error "A value could not be stored." today
        assert v1.status_code == 200, v1.text


async def test_s20f_a_finish_reason_holding_a_nul_still_gets_the_complete_reply_saved(
    stack_urls: StackUrls, migrated_database_url: str, unique: str
) -> None:
    async with proxied(stack_urls, unique) as (chat, _, _):
        alice = await chat.world.register("alice")
        pieces = openai_stream(["fine", " text"], finish_reason="stop\u0000")
        chat.provider.script(Reply(chunks=pieces))
        started = await chat.start(alice["auth"], **_start_body())
        events = await _events(chat, started["sessionId"])
        assert _text(events) == "fine text"
        assert await _until_final(stack_urls, started["chatId"]) == ("complete", "fine text")
        assert events[-1][1] == "done", events[-1]
