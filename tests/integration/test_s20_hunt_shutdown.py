"""Hunt (s20): shutdown, restarts and rolling deploys, as an operator does them while chats stream.

Real processes only: ``whalli serve`` (and ``whalli worker``) started here as subprocesses on
loopback ports, pointed at the shared test stack through ``WHALLI_*`` variables, with a loopback
fake OpenAI provider in the test's loop. Only processes started here are signalled or killed
(by their pid); the shared Postgres, Redis and S3 are never touched. Every subprocess is killed
at the end of its test, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from redis.asyncio import Redis

from tests.support.fake_providers import API_KEY, FakeProviderServer, Reply, openai_default
from tests.support.fake_providers import openai_stream as openai_pieces
from whalli.adapters.embedded.process import free_port
from whalli.adapters.embedded.stack import StackUrls
from whalli.domain.model.chat_titles import INSTRUCTION

MODEL = "openai/gpt-4o-mini"
PASSWORD = "a-long-passphrase-77"
Event = tuple[str, dict[str, Any]]
# uvicorn re-raises the SIGTERM it handled once it has shut down cleanly
STOPPED = (0, -signal.SIGTERM)


@pytest.fixture(autouse=True)
def _garbage_collected_at_teardown() -> Iterator[None]:
    """No cyclic garbage collection during a test and its report; all of it at its teardown.
    Connections cut by killed processes leave tasks and async generators with finalizers in
    reference cycles; collected in the middle of one of pytest's ``ast.parse`` calls (its
    failure report, its assertion rewriting), their finalizers met CPython 3.11.7's "AST
    constructor recursion depth mismatch", a SystemError that aborted the session."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


# --- processes --------------------------------------------------------------------------------
def _env(stack_urls: StackUrls, provider_url: str, queue: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHALLI_")}
    env.update(
        WHALLI_ENV="test",
        WHALLI_DATABASE_URL=stack_urls.database_url,
        WHALLI_REDIS_URL=stack_urls.redis_url,
        WHALLI_S3_ENDPOINT=stack_urls.s3_endpoint,
        WHALLI_S3_ACCESS_KEY=stack_urls.s3_access_key,
        WHALLI_S3_SECRET_KEY=stack_urls.s3_secret_key,
        WHALLI_S3_BUCKET=f"shutdown-{queue}",
        WHALLI_JWT_SECRET="s20-shutdown-hunt-" + "x" * 60,
        WHALLI_OPENAI_API_KEY=API_KEY,
        WHALLI_OPENAI_BASE_URL=provider_url,
        WHALLI_PROVIDER_MAX_ATTEMPTS="1",
        WHALLI_CHAT_HEARTBEAT_S="1",
        WHALLI_RATE_LIMIT_ENABLED="false",
        WHALLI_CHAT_PROGRESS_EVERY_S="0.1",
        WHALLI_CHAT_TITLES="off",
        WHALLI_QUEUE_NAME=queue,
        WHALLI_LOG_JSON="false",
        # the sweepers would pick up other tests' rows in the shared database
        WHALLI_EXTRACTION_SWEEP_INTERVAL_S="0",
        WHALLI_REPLY_SWEEP_INTERVAL_S="0",
    )
    env.update(more)
    return env


class Processes:
    """The subprocesses a test started; all killed (by pid) at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[subprocess.Popen[bytes]] = []

    def _spawn(self, args: list[str], env: dict[str, str], name: str, metrics: Path | None):
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        metrics = metrics or home / "metrics"
        metrics.mkdir(parents=True, exist_ok=True)
        own = {
            "WHALLI_LOG_DIR": str(home / "logs"),
            "WHALLI_DATA_DIR": str(home / "data"),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }
        log = (home / "output.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "whalli.entrypoints.cli.main", *args],
            env={**env, **own}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.started.append(process)
        return process

    async def serve(
        self, env: dict[str, str], name: str, *, port: int | None = None,
        workers: int | None = None, metrics: Path | None = None,
    ) -> tuple[subprocess.Popen[bytes], str]:  # fmt: skip
        port = port or free_port()
        args = ["serve", "--port", str(port)]
        if workers:
            args += ["--workers", str(workers)]
        process = self._spawn(args, env, name, metrics)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            for _ in range(900):  # a guard against a hang, not a timing expectation
                assert process.poll() is None, self.output(name)
                try:
                    if (await client.get(f"{url}/api/health")).status_code == 200:
                        return process, url
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"the API did not answer: {self.output(name)}")

    def worker(self, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        return self._spawn(["worker"], env, name, None)

    def output(self, name: str) -> str:
        path = self.root / name / "output.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                for child in _children(process.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def processes(tmp_path: Path) -> AsyncIterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found += [int(p) for p in text.split()]
    return found


async def _exited(process: subprocess.Popen[bytes], seconds: float) -> int | None:
    """The exit code once ``process`` exits, or ``None`` if it still runs after ``seconds``
    (a guard against a hang)."""
    for _ in range(int(seconds / 0.1)):
        if process.poll() is not None:
            return process.returncode
        await asyncio.sleep(0.1)
    return None


# --- HTTP ---------------------------------------------------------------------------------------
async def _register(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    email = f"shutdown-{uuid.uuid4().hex[:10]}@example.com"
    registered = await client.post(
        f"{url}/api/auth/register", json={"email": email, "password": PASSWORD, "name": "S"}
    )
    assert registered.status_code == 201, registered.text
    body: dict[str, Any] = registered.json()
    token = body["tokens"]["accessToken"]
    return {"auth": {"Authorization": f"Bearer {token}"}, "id": body["user"]["id"]}


async def _start(client: httpx.AsyncClient, url: str, auth: dict[str, str]) -> dict[str, Any]:
    started = await client.post(
        f"{url}/api/chat/start", headers=auth,
        json={"model": MODEL, "message": f"shutdown {uuid.uuid4()}"},
    )  # fmt: skip
    assert started.status_code == 201, started.text
    body: dict[str, Any] = started.json()
    return body


class Reader:
    """``GET /api/chat/stream`` read in the background (an EventSource without reconnection):
    its events, its heartbeats, and how it ended (``final``; ``torn`` when the connection
    broke before a final event)."""

    def __init__(self, client: httpx.AsyncClient, url: str, session_id: str) -> None:
        self._client, self._url = client, f"{url}/api/chat/stream?sessionId={session_id}"
        self.events: list[Event] = []
        self.heartbeats = 0
        self.torn: BaseException | None = None
        self.ended = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Reader:
        self._task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    @property
    def final(self) -> Event | None:
        if self.events and self.events[-1][0] in ("done", "error"):
            return self.events[-1]
        return None

    async def _read(self) -> None:
        try:
            async with self._client.stream("GET", self._url) as response:
                assert response.status_code == 200
                fields: dict[str, str] = {}
                async for line in response.aiter_lines():
                    if line.startswith(":"):
                        self.heartbeats += 1
                    elif line == "":
                        if "data" in fields:
                            data = json.loads(fields["data"])
                            self.events.append((fields.get("event", "message"), data))
                            if self.final is not None:
                                return
                        fields = {}
                    else:
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
        except (httpx.HTTPError, AssertionError) as e:
            self.torn = e
        finally:
            self.ended.set()

    async def tokens(self, count: int, seconds: float = 20.0) -> None:
        async with asyncio.timeout(seconds):
            while sum(1 for name, _ in self.events if name == "token") < count:
                assert not self.ended.is_set(), (self.events, self.torn)
                await asyncio.sleep(0.05)

    async def end(self, seconds: float) -> bool:
        """Whether the stream ended (a final event or a broken connection) within
        ``seconds`` (a guard against a hang)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.ended.wait()
        return self.ended.is_set()


# --- the database ---------------------------------------------------------------------------------
async def _reply(database_url: str, chat_id: str) -> tuple[str, str, str]:
    """(id, status, content) of the chat's last assistant message."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT id, status, content FROM messages WHERE chat_id = %s AND role = 'assistant' "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            (chat_id,),
        )
        row = await cursor.fetchone()
    assert row is not None
    return str(row[0]), str(row[1]), str(row[2])


async def _in_redis(stack_urls: StackUrls, session_id: str, events: int) -> bool:
    """Whether the reply's Redis stream comes to hold ``events`` events."""
    async with Redis.from_url(stack_urls.redis_url) as redis:
        for _ in range(300):  # a guard against a hang, not a timing expectation
            if await redis.xlen(f"whalli:reply:{session_id}") >= events:
                return True
            await asyncio.sleep(0.01)
    return False


async def _saved(database_url: str, chat_id: str, text: str) -> bool:
    """Whether the reply comes to hold ``text`` (its progress checkpoint)."""
    for _ in range(300):  # a guard against a hang, not a timing expectation
        if (await _reply(database_url, chat_id))[2] == text:
            return True
        await asyncio.sleep(0.1)
    return False


async def _usage_rows(database_url: str, message_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM usage_records WHERE message_id = %s", (message_id,)
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _chat_title(database_url: str, chat_id: str) -> str:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT title FROM chats WHERE id = %s", (chat_id,))
        row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


def _held(*tokens: str) -> Reply:
    """The role chunk and ``tokens``, then nothing more until the client leaves."""
    pieces = openai_pieces(list(tokens), usage=None, done=False)[: 1 + len(tokens)]
    return Reply(chunks=pieces, delay=0.2, hold=True)


def _queue(unique: str) -> str:
    return f"shutdown-{unique}"


async def _drop_queue(stack_urls: StackUrls, queue: str) -> None:
    async with Redis.from_url(stack_urls.redis_url) as client:
        async for key in client.scan_iter(match=f"{queue}:*"):
            await client.delete(key)


# --- SIGTERM while replies stream ---------------------------------------------------------------
async def test_s20d_sigterm_lets_a_reply_in_flight_finish_and_its_reader_elsewhere_gets_done(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A deploy stops A while it generates a reply read from B: the reply goes on to its end
    within the grace period, is saved ``complete``, B's reader gets ``done``, A exits 0."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        provider.script(Reply(chunks=openai_pieces(["one", " two"]), gate=gate, gate_after=2))
        env = _env(stack_urls, provider.url, _queue(unique))
        (a, a_url), (_, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            started = await _start(client, a_url, user["auth"])
            async with Reader(client, b_url, started["sessionId"]) as reader:
                await reader.tokens(1)
                a.send_signal(signal.SIGTERM)
                await asyncio.sleep(1)
                assert a.poll() is None  # still finishing the reply
                gate.set()
                assert await reader.end(20)
            assert await _exited(a, 25) in STOPPED, procs.output("a")
        assert reader.torn is None, reader.torn
        assert reader.final is not None, reader.events
        assert reader.final[0] == "done", reader.events
        reply_id, status, content = await _reply(migrated_database_url, started["chatId"])
        assert (status, content) == ("complete", "one two")
        assert await _usage_rows(migrated_database_url, reply_id) == 1


async def test_s20d_sigterm_cuts_a_long_reply_which_is_then_saved_ended_with_its_usage(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A deploy stops A while it generates a reply that outlasts the grace period (20 s): A
    cancels it. What was generated should be saved, the message ended (``aborted`` or
    ``failed``, as a stop or a provider failure saves it, with its estimated usage), not left
    ``streaming`` for the sweeper (15 minutes later) with no usage for the tokens paid for."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        provider.script(_held("first", " second"))
        env = _env(stack_urls, provider.url, _queue(unique))
        (a, a_url), (_, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            started = await _start(client, a_url, user["auth"])
            chat_id = started["chatId"]
            async with Reader(client, b_url, started["sessionId"]) as reader:
                await reader.tokens(2)
                assert await _saved(migrated_database_url, chat_id, "first second")
                a.send_signal(signal.SIGTERM)
                assert await _exited(a, 40) in STOPPED, procs.output("a")
                assert await reader.end(10)
            # the reader elsewhere is told (a final event), rather than waiting forever: the
            # reply was stopped as a user's stop stops it
            assert reader.final is not None, (reader.events, reader.torn)
            assert reader.final[0] == "done"
            assert reader.final[1]["status"] == "aborted"
            reply_id, status, content = await _reply(migrated_database_url, chat_id)
            assert content == "first second"
            assert status in ("aborted", "failed"), status
            assert await _usage_rows(migrated_database_url, reply_id) == 1


async def test_s20d_while_draining_readiness_answers_503_instead_of_refusing_connections(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Behind Traefik a rolling deploy needs the old instance to report not-ready (so the
    proxy stops sending it traffic) while it still accepts connections; then it may stop."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        provider.script(Reply(chunks=openai_pieces(["one", " two"]), gate=gate, gate_after=2))
        env = _env(stack_urls, provider.url, _queue(unique), WHALLI_SHUTDOWN_DRAIN_S="3")
        a, a_url = await procs.serve(env, "a")
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                user = await _register(client, a_url)
                await _start(client, a_url, user["auth"])
                assert (await client.get(f"{a_url}/api/health/ready")).status_code == 200
                a.send_signal(signal.SIGTERM)
                await asyncio.sleep(1)
                assert a.poll() is None  # it drains the reply it generates
                answers: list[object] = []
                for path in ("/api/health/ready", "/api/models", "/api/health"):
                    try:
                        got = await client.get(f"{a_url}{path}", headers=user["auth"])
                        answers.append((got.status_code, got.json()))
                    except httpx.TransportError as e:
                        answers.append(type(e).__name__)
        finally:
            gate.set()
        # not ready, yet still answering
        assert answers[0] == (503, {"api": "draining: this process is shutting down"}), answers
        # a request arriving meanwhile is served, and the process is alive (liveness)
        assert isinstance(answers[1], tuple), answers
        assert answers[1][0] == 200, answers
        assert answers[2] == (200, {"status": "ok"}), answers
        assert await _exited(a, 25) in STOPPED


async def test_shutdown_drain_ends_at_a_second_sigterm(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """An operator who cannot wait sends SIGTERM again: the drain period is cut short and the
    usual shutdown follows at once (here well before the 60 s period would end)."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        env = _env(stack_urls, provider.url, _queue(unique), WHALLI_SHUTDOWN_DRAIN_S="60")
        a, a_url = await procs.serve(env, "a")
        async with httpx.AsyncClient(timeout=10) as client:
            a.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            ready = await client.get(f"{a_url}/api/health/ready")
            assert ready.status_code == 503, ready.text
            assert a.poll() is None
            a.send_signal(signal.SIGTERM)
        assert await _exited(a, 15) in STOPPED, procs.output("a")


async def test_s20d_a_reply_stopped_while_its_process_drains_is_saved_aborted_at_once(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A drains (SIGTERM) a reply read from B; the user presses Stop on B. A still polls the
    stop requests while it drains: the reply ends ``aborted`` with its text, B's reader gets its
    final event, and A exits without waiting out its grace period."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        provider.script(_held("first", " second"))
        env = _env(stack_urls, provider.url, _queue(unique))
        (a, a_url), (_, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            started = await _start(client, a_url, user["auth"])
            session_id = started["sessionId"]
            async with Reader(client, b_url, session_id) as reader:
                await reader.tokens(2)
                a.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                stopped = await client.post(
                    f"{b_url}/api/chat/sessions/{session_id}/stop", headers=user["auth"]
                )
                assert stopped.status_code == 202, stopped.text
                assert await reader.end(15)
                # well within the 20 s grace: the stop ended the generation
                assert await _exited(a, 15) in STOPPED, procs.output("a")
        assert reader.final is not None, (reader.events, reader.torn)
        assert reader.final[0] == "done", reader.final
        assert reader.final[1]["status"] == "aborted"
        reply_id, status, content = await _reply(migrated_database_url, started["chatId"])
        assert (status, content) == ("aborted", "first second")
        assert await _usage_rows(migrated_database_url, reply_id) == 1


async def test_s20d_a_reader_cut_by_its_draining_process_resumes_elsewhere_to_the_end(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """The browser reads the reply from A, the process generating it, when A is stopped; the
    reply outlasts uvicorn's 10 s drain, so A cuts the stream. Reconnecting (as EventSource
    does) to B with its ``Last-Event-ID`` gets the rest of the reply and ``done``, nothing
    twice and nothing missing."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        pieces = openai_pieces(["one", " two", " three"])
        provider.script(Reply(chunks=pieces, gate=gate, gate_after=3))
        env = _env(stack_urls, provider.url, _queue(unique))
        (a, a_url), (_, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            started = await _start(client, a_url, user["auth"])
            session_id = started["sessionId"]
            url = f"{a_url}/api/chat/stream?sessionId={session_id}"
            first: list[tuple[str, str, dict[str, Any]]] = []
            torn: BaseException | None = None
            try:
                async with asyncio.timeout(25), client.stream("GET", url) as response:
                    fields: dict[str, str] = {}
                    async for line in response.aiter_lines():
                        if line == "" and "data" in fields:
                            data = json.loads(fields["data"])
                            first.append((fields["id"], fields["event"], data))
                            if len(first) == 2:
                                a.send_signal(signal.SIGTERM)
                        if line == "":
                            fields = {}
                        elif not line.startswith(":"):
                            name, _, value = line.partition(":")
                            fields[name] = value.removeprefix(" ")
            except httpx.HTTPError as e:
                torn = e
            gate.set()
            assert [e[1:] for e in first] == [
                ("token", {"delta": "one"}),
                ("token", {"delta": " two"}),
            ], (first, torn)
            resumed_url = f"{b_url}/api/chat/stream?sessionId={session_id}"
            async with (
                asyncio.timeout(20),
                client.stream(
                    "GET", resumed_url, headers={"Last-Event-ID": first[-1][0]}
                ) as response,
            ):
                assert response.status_code == 200
                rest: list[Event] = []
                fields = {}
                async for line in response.aiter_lines():
                    if line == "" and "data" in fields:
                        rest.append((fields["event"], json.loads(fields["data"])))
                        if rest[-1][0] in ("done", "error"):
                            break
                    if line == "":
                        fields = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.removeprefix(" ")
            assert await _exited(a, 30) in STOPPED, procs.output("a")
        assert rest[0] == ("token", {"delta": " three"}), rest
        assert rest[-1][0] == "done", rest
        _, status, content = await _reply(migrated_database_url, started["chatId"])
        assert (status, content) == ("complete", "one two three")


async def test_s20d_a_new_process_on_the_same_port_serves_a_reply_the_old_one_still_drains(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """An in-place restart: A is stopped and its replacement started on the same port while A
    still finishes a reply. The replacement binds the port at once (A closed its listener),
    its reader gets the reply from the start and ``done`` once A finishes it."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        provider.script(Reply(chunks=openai_pieces(["one", " two"]), gate=gate, gate_after=2))
        env = _env(stack_urls, provider.url, _queue(unique))
        port = free_port()
        a, url = await procs.serve(env, "a", port=port)
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, url)
            started = await _start(client, url, user["auth"])
            a.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            _, again = await procs.serve(env, "a-again", port=port)
            assert a.poll() is None  # the old one still drains its reply
            async with Reader(client, again, started["sessionId"]) as reader:
                await reader.tokens(1)
                gate.set()
                assert await reader.end(20)
            assert await _exited(a, 25) in STOPPED, procs.output("a")
        assert reader.final is not None, (reader.events, reader.torn)
        assert reader.final[0] == "done"
        assert "".join(d["delta"] for n, d in reader.events if n == "token") == "one two"
        _, status, content = await _reply(migrated_database_url, started["chatId"])
        assert (status, content) == ("complete", "one two")


# --- the generating process killed ----------------------------------------------------------------
async def test_s20d_stopping_a_reply_whose_process_was_killed_ends_it_and_frees_the_chat(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A is killed mid-reply (OOM, node lost). The user, now served by B, sees the reply cut
    (``reply_interrupted``) and presses Stop, then Regenerate. Nobody generates that reply any
    more, so the stop should end it (``aborted`` with the text it had) and let the chat go on,
    not leave it 409 ``reply_in_progress`` for up to 20 minutes (sweeper interval + age)."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        provider.script(_held("first", " second"))
        env = _env(stack_urls, provider.url, _queue(unique))
        (a, a_url), (_, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            started = await _start(client, a_url, user["auth"])
            chat_id, session_id = started["chatId"], started["sessionId"]
            async with Reader(client, b_url, session_id) as reader:
                await reader.tokens(2)
                assert await _saved(migrated_database_url, chat_id, "first second")
                a.kill()
                a.wait()
                assert await reader.end(20)
            assert reader.final is not None, (reader.events, reader.torn)
            assert reader.final[1]["code"] == "reply_interrupted"

            stopped = await client.post(
                f"{b_url}/api/chat/sessions/{session_id}/stop", headers=user["auth"]
            )
            assert stopped.status_code == 202, stopped.text
            again = None
            for _ in range(50):  # a few stop-poll intervals, a guard against a hang
                again = await client.post(
                    f"{b_url}/api/chat/regenerate", headers=user["auth"],
                    json={"chatId": chat_id},
                )  # fmt: skip
                if again.status_code != 409:
                    break
                await asyncio.sleep(0.1)
            assert again is not None
            assert again.status_code == 201, again.text


async def test_s20d_a_reply_whose_process_was_killed_is_not_resumed_by_the_restarted_process(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A is killed mid-reply and restarted on the same port (a crash loop, a container
    restart). A reader coming back to A with its ``Last-Event-ID`` gets the end of the reply
    (``reply_interrupted``), not heartbeats forever from a process that never generated it."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        provider.script(_held("first", " second"))
        env = _env(stack_urls, provider.url, _queue(unique))
        port = free_port()
        a, a_url = await procs.serve(env, "a", port=port)
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            started = await _start(client, a_url, user["auth"])
            async with Reader(client, a_url, started["sessionId"]) as reader:
                await reader.tokens(2)
                # (written behind to Redis: the kill comes once both tokens are there, so that
                # what they replay is known)
                assert await _in_redis(stack_urls, started["sessionId"], 2)
                a.kill()
                a.wait()
                assert await reader.end(10)
            assert reader.torn is not None  # the connection itself broke
            _, again_url = await procs.serve(env, "a-again", port=port)
            async with Reader(client, again_url, started["sessionId"]) as resumed:
                assert await resumed.end(20)
            assert resumed.final is not None, (resumed.events, resumed.torn)
            assert resumed.final[0] == "error"
            assert resumed.final[1]["code"] == "reply_interrupted"
            # everything generated before the crash is replayed first
            tokens = "".join(d["delta"] for name, d in resumed.events if name == "token")
            assert tokens == "first second"


async def test_s20d_the_sweeper_ends_a_reply_whose_process_was_killed_and_frees_the_chat(
    own_database: str, stack_urls: StackUrls, unique: str, tmp_path: Path
) -> None:
    """On a database of its own (the sweeper would end other tests' replies in the shared
    one): A is killed mid-reply; the worker's reply sweeper ends the reply ``failed`` with the
    text of its last checkpoint, and the chat can be answered again."""
    queue = _queue(unique)
    try:
        async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
            provider.script(_held("first", " second"))
            env = _env(stack_urls, provider.url, queue, WHALLI_DATABASE_URL=own_database)
            swept = {
                **env,
                "WHALLI_REPLY_SWEEP_INTERVAL_S": "1",
                "WHALLI_REPLY_ABANDONED_AFTER_S": "2",
            }
            procs.worker(swept, "worker")
            a, a_url = await procs.serve(env, "a")
            async with httpx.AsyncClient(timeout=30) as client:
                user = await _register(client, a_url)
                started = await _start(client, a_url, user["auth"])
                chat_id = started["chatId"]
                async with Reader(client, a_url, started["sessionId"]) as reader:
                    await reader.tokens(2)
                    assert await _saved(own_database, chat_id, "first second")
                    a.kill()
                    a.wait()
                    assert await reader.end(10)
                ended = None
                for _ in range(300):  # the worker boots, then sweeps; a guard against a hang
                    ended = await _reply(own_database, chat_id)
                    if ended[1] != "streaming":
                        break
                    await asyncio.sleep(0.1)
                assert ended is not None
                assert ended[1:] == ("failed", "first second"), procs.output("worker")
                _, b_url = await procs.serve(env, "b")
                again = await client.post(
                    f"{b_url}/api/chat/regenerate", headers=user["auth"], json={"chatId": chat_id}
                )
                assert again.status_code == 201, again.text
    finally:
        await _drop_queue(stack_urls, queue)


async def test_s20d_a_reply_whose_only_reader_died_with_its_process_is_cancelled_as_unread(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """With ``WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S=2`` a reply nobody reads is stopped after
    2 s (and saved ``aborted``). B generates a reply read only from A; A is killed (OOM, node
    lost) with the stream open: nobody reads the reply any more, so B should stop it rather
    than pay for a whole reply no one will see."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        provider.script(_held("first", " second"))
        env = _env(
            stack_urls, provider.url, _queue(unique), WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S="2"
        )
        (a, a_url), (_, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, b_url)
            started = await _start(client, b_url, user["auth"])
            chat_id = started["chatId"]
            async with Reader(client, a_url, started["sessionId"]) as reader:
                await reader.tokens(2)
                a.kill()
                a.wait()
                assert await reader.end(10)
            status = "streaming"
            for _ in range(100):  # 2 s unread, and the stop poll: a guard against a hang
                _, status, content = await _reply(migrated_database_url, chat_id)
                if status != "streaming":
                    break
                await asyncio.sleep(0.1)
        assert (status, content) == ("aborted", "first second")


# --- metrics across process deaths ----------------------------------------------------------------
def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


async def test_s20d_an_api_process_killed_with_open_streams_leaves_no_stale_gauges(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """``whalli serve --workers 2`` (``WHALLI_WEB_WORKERS``): uvicorn restarts an API process
    that died (OOM-killed), in the same container and metrics directory. Once no stream is
    open, ``whalli_sse_connections_active`` must read 0 again, not the dead one's count."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        provider.script(_held("first"), _held("again"))
        env = _env(stack_urls, provider.url, _queue(unique))
        server, url = await procs.serve(env, "api", workers=2)
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, url)
            readers = []
            for _ in range(2):
                started = await _start(client, url, user["auth"])
                readers.append(Reader(client, url, started["sessionId"]))
            async with readers[0], readers[1]:
                for reader in readers:
                    await reader.tokens(1)
                metrics = (await client.get(f"{url}/api/metrics")).text
                assert _gauge(metrics, "whalli_sse_connections_active") == 2
                workers = [
                    pid
                    for pid in _children(server.pid)
                    if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
                ]
                assert len(workers) == 2
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
                for reader in readers:
                    assert await reader.end(10)
            scraped = None
            for _ in range(300):  # until a restarted process answers; a guard against a hang
                try:
                    answer = await client.get(f"{url}/api/metrics")
                    if answer.status_code == 200:
                        scraped = answer.text
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            assert scraped is not None, procs.output("api")
            assert server.poll() is None
        assert _gauge(scraped, "whalli_sse_connections_active") == 0


async def test_s20d_an_api_restarted_after_a_crash_does_not_count_the_dead_ones_streams(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """``whalli serve`` outside a container (systemd, a VM): its metrics directory is a plain
    directory (``WHALLI_METRICS_DIR``, or ``.whalli/metrics`` by default) that survives a
    restart. After a crash with a stream open and a restart, no stream is open."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        provider.script(_held("first"))
        env = _env(stack_urls, provider.url, _queue(unique))
        metrics_dir = tmp_path / "shared-metrics"
        a, url = await procs.serve(env, "a", metrics=metrics_dir)
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, url)
            started = await _start(client, url, user["auth"])
            async with Reader(client, url, started["sessionId"]) as reader:
                await reader.tokens(1)
                a.kill()
                a.wait()
                assert await reader.end(10)
            _, again = await procs.serve(env, "a-again", metrics=metrics_dir)
            scraped = (await client.get(f"{again}/api/metrics")).text
        assert _gauge(scraped, "whalli_sse_connections_active") == 0
        # the scrape itself is the one request in flight
        assert _gauge(scraped, "whalli_http_requests_in_flight") == 1


# --- the worker stopped mid-job ------------------------------------------------------------------
def _is_title_request(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or [{}]
    return bool(messages[0].get("content") == INSTRUCTION)


async def test_s20d_a_worker_stopped_during_a_title_job_finishes_it_before_exiting(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """SIGTERM reaches the worker while its title job waits for the model: the job is not
    lost. The worker finishes it (the chat gets its title) and exits 0."""
    gate = asyncio.Event()
    default = openai_default()

    def answer(request: Any) -> Reply:
        if not _is_title_request(request.body):
            return default(request)
        pieces = openai_pieces(['"Deploy', " Day", ' Notes"'], usage=(60, 5))
        return Reply(chunks=pieces, gate=gate, gate_after=1)

    queue = _queue(unique)
    try:
        async with FakeProviderServer(answer) as provider, processes(tmp_path) as procs:
            env = _env(stack_urls, provider.url, queue, WHALLI_CHAT_TITLES="model")
            worker = procs.worker(env, "worker")
            _, a_url = await procs.serve(env, "a")
            async with httpx.AsyncClient(timeout=30) as client:
                user = await _register(client, a_url)
                started = await _start(client, a_url, user["auth"])
                async with Reader(client, a_url, started["sessionId"]) as reader:
                    assert await reader.end(20)
                assert reader.final is not None
                assert reader.final[0] == "done"
                for _ in range(600):  # the worker boots and takes the job; a hang guard
                    if any(_is_title_request(r.body) for r in provider.requests):
                        break
                    assert worker.poll() is None, procs.output("worker")
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(procs.output("worker"))
                worker.send_signal(signal.SIGTERM)
                await asyncio.sleep(1)
                gate.set()
                assert await _exited(worker, 30) == 0, procs.output("worker")
            assert await _chat_title(migrated_database_url, started["chatId"]) == (
                "Deploy Day Notes"
            )
    finally:
        await _drop_queue(stack_urls, queue)
