"""Hunt (s21c): the shutdown drain (``WHALLI_SHUTDOWN_DRAIN_S``) and reader leases
(``whalli:reply-leases:{session}``, used by ``WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S``).

Real ``whalli serve`` processes on loopback ports against the shared test stack, a loopback fake
OpenAI provider (the helpers of ``test_s20_hunt_shutdown``), and the Redis adapters as the app
wires them. Only processes started here are signalled or killed (by pid); the shared Redis is
never flushed (a ``SCRIPT FLUSH`` stands for a restarted Redis's lost script cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from tests.integration.test_s20_hunt_shutdown import (
    MODEL,
    STOPPED,
    Reader,
    _children,
    _env,
    _exited,
    _garbage_collected_at_teardown,  # noqa: F401 (an autouse fixture)
    _held,
    _queue,
    _register,
    _reply,
    processes,
)
from tests.support.fake_providers import FakeProviderServer, Reply, openai_default
from tests.support.fake_providers import openai_stream as openai_pieces
from whalli.adapters.embedded.process import free_port
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.reply_stream import RedisReplyStream
from whalli.adapters.redis.resp import create_resp_client

DRAINING = (503, {"api": "draining: this process is shutting down"})
FINAL = ("complete", "aborted", "failed")
BIG_MODEL = "openai/gpt-5-mini"  # an output cap of 128,000 tokens (gpt-4o-mini's: 16,384)


# --- helpers --------------------------------------------------------------------------------------
async def _final_status(database_url: str, chat_id: str, seconds: float) -> tuple[str, str]:
    """(status, content) of the chat's reply once it is final, or as it is after ``seconds``
    (a guard against a hang)."""
    status, content = "streaming", ""
    for _ in range(int(seconds / 0.1)):
        _, status, content = await _reply(database_url, chat_id)
        if status in FINAL:
            break
        await asyncio.sleep(0.1)
    return status, content


async def _unread_for(database_url: str, chat_id: str, seconds: float) -> str:
    """The reply's status after ``seconds`` (or as soon as it is final): a reply stopped as
    unread is final well within the lease (3 s) + the abandon time (2 s) + a poll."""
    status, _ = await _final_status(database_url, chat_id, seconds)
    return status


async def _ready(client: httpx.AsyncClient, url: str) -> object:
    try:
        got = await client.get(f"{url}/api/health/ready")
        return got.status_code, got.json()
    except httpx.TransportError as e:
        return type(e).__name__


async def _leases(stack_urls: StackUrls, session_id: str) -> int:
    async with Redis.from_url(stack_urls.redis_url) as redis:
        return int(await redis.zcard(f"whalli:reply-leases:{session_id}"))


async def _start(
    client: httpx.AsyncClient, url: str, auth: dict[str, str], model: str = MODEL
) -> dict[str, Any]:
    started = await client.post(
        f"{url}/api/chat/start", headers=auth,
        json={"model": model, "message": f"drain {uuid.uuid4()}"},
    )  # fmt: skip
    assert started.status_code == 201, started.text
    body: dict[str, Any] = started.json()
    return body


async def _both_started(log: Path) -> None:
    """Both workers of ``--workers 2`` finished their start-up (a guard against a hang)."""
    for _ in range(300):
        if log.read_text(errors="replace").count("Application startup complete") >= 2:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(log.read_text(errors="replace")[-3000:])


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def _slow_stream(url: str, session_id: str) -> AsyncIterator[asyncio.StreamReader]:
    """An SSE request on a socket with a tiny receive buffer, read only when the test reads
    the returned reader: a client that stops reading (a stalled tab, a slow link) makes the
    server's writes wait (backpressure)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", _port(url)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    request = (
        f"GET /api/chat/stream?sessionId={session_id} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    try:
        yield reader
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_until(reader: asyncio.StreamReader, marker: bytes, seconds: float) -> bytes:
    seen = b""
    async with asyncio.timeout(seconds):
        while marker not in seen:
            chunk = await reader.read(65536)
            if not chunk:
                break
            seen += chunk
            seen = seen[-(len(marker) + 65536) :]
    return seen


# --- the drain ----------------------------------------------------------------------------------
async def test_s21c_two_workers_both_drain_then_the_supervisor_exits_cleanly(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """``whalli serve --workers 2``: uvicorn's supervisor forwards SIGTERM to each worker. Both
    drain (every readiness answer is the draining 503, whichever worker answers, while other
    routes are served), then exit, and the supervisor exits cleanly without killing them."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        env = _env(stack_urls, provider.url, _queue(unique), WHALLI_SHUTDOWN_DRAIN_S="3")
        a, a_url = await procs.serve(env, "a", workers=2)
        await _both_started(tmp_path / "a" / "output.log")
        # the workers only: multiprocessing's resource tracker is a child too, and it exits
        # after the supervisor does (it reads the supervisor's pipe to its end)
        workers = [
            pid
            for pid in _children(a.pid)
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        ]
        assert len(workers) == 2, workers
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{a_url}/api/health/ready")).status_code == 200
            a.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            answers = []
            for _ in range(8):  # new connections: the kernel spreads them over both workers
                async with httpx.AsyncClient(timeout=10) as fresh:
                    answers.append(await _ready(fresh, a_url))
                    models = await fresh.get(f"{a_url}/api/health")
                    answers.append((models.status_code, "health"))
        code = await _exited(a, 25)
        output = (tmp_path / "a" / "output.log").read_text(errors="replace")
    assert all(x == DRAINING for x in answers[::2]), answers
    assert all(x == (200, "health") for x in answers[1::2]), answers
    assert code == 0, output
    assert output.count("shutdown_draining") == 2, output
    assert output.count("shutdown_drained") == 2, output
    assert "died" not in output, output  # no worker was killed and restarted
    for pid in workers:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


async def test_s21c_two_workers_a_second_sigterm_to_the_supervisor_cuts_the_drain_short(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """README: 'a second SIGTERM (or SIGINT) stops at once'. With ``WHALLI_WEB_WORKERS=2`` an
    operator (``docker kill -s TERM``, systemd) signals the main process, the supervisor."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        env = _env(stack_urls, provider.url, _queue(unique), WHALLI_SHUTDOWN_DRAIN_S="60")
        a, a_url = await procs.serve(env, "a", workers=2)
        await _both_started(tmp_path / "a" / "output.log")
        async with httpx.AsyncClient(timeout=10) as client:
            a.send_signal(signal.SIGTERM)
            for _ in range(100):  # a guard against a hang
                if await _ready(client, a_url) == DRAINING:
                    break
                await asyncio.sleep(0.1)
            assert await _ready(client, a_url) == DRAINING
            a.send_signal(signal.SIGTERM)
        assert await _exited(a, 20) in STOPPED, procs.output("a")


async def test_s21c_a_reply_started_and_read_during_the_drain_ends_done_and_is_saved(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A chat started and read while the process drains (the balancer has not yet taken it out
    of its pool) still streams to its ``done`` and is saved; then the process exits."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        provider.script(
            Reply(chunks=openai_pieces(["late", " reply"]), gate=gate, gate_after=2, delay=0.05)
        )
        env = _env(stack_urls, provider.url, _queue(unique), WHALLI_SHUTDOWN_DRAIN_S="4")
        a, a_url = await procs.serve(env, "a")
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            a.send_signal(signal.SIGTERM)
            for _ in range(50):  # a guard against a hang
                if await _ready(client, a_url) == DRAINING:
                    break
                await asyncio.sleep(0.05)
            started = await _start(client, a_url, user["auth"])
            async with Reader(client, a_url, started["sessionId"]) as reader:
                await reader.tokens(1)
                gate.set()
                assert await reader.end(25)
        final = reader.final
        status = await _final_status(migrated_database_url, started["chatId"], 10)
        code = await _exited(a, 30)
    assert final is not None, (reader.events, reader.torn)
    assert final[0] == "done", reader.events
    assert status == ("complete", "late reply")
    assert code in STOPPED, procs.output("a")


async def test_s21c_sigint_during_the_drain_stops_at_once(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Ctrl-C while a 60 s drain runs: the usual shutdown follows at once."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        env = _env(stack_urls, provider.url, _queue(unique), WHALLI_SHUTDOWN_DRAIN_S="60")
        a, a_url = await procs.serve(env, "a")
        async with httpx.AsyncClient(timeout=10) as client:
            a.send_signal(signal.SIGTERM)
            for _ in range(50):  # a guard against a hang
                if await _ready(client, a_url) == DRAINING:
                    break
                await asyncio.sleep(0.05)
            assert await _ready(client, a_url) == DRAINING
            a.send_signal(signal.SIGINT)
        code = await _exited(a, 15)
    assert code in (*STOPPED, -signal.SIGINT, 1, 130), procs.output("a")


async def test_s21c_a_sigterm_once_shutdown_began_leaves_running_replies_their_grace(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """The drain is over and the usual shutdown runs (a reply still generating, read elsewhere):
    another SIGTERM (a supervisor repeating itself) must not cut the reply, which completes and
    is saved; the reader on B gets its ``done``."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        provider.script(Reply(chunks=openai_pieces(["one", " two"]), gate=gate, gate_after=2))
        env = _env(stack_urls, provider.url, _queue(unique), WHALLI_SHUTDOWN_DRAIN_S="1")
        (a, a_url), (_, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            started = await _start(client, a_url, user["auth"])
            async with Reader(client, b_url, started["sessionId"]) as reader:
                await reader.tokens(1)
                a.send_signal(signal.SIGTERM)
                for _ in range(100):  # the drain ends: the port closes (a guard against a hang)
                    if isinstance(await _ready(client, a_url), str):
                        break
                    await asyncio.sleep(0.1)
                assert isinstance(await _ready(client, a_url), str)
                assert a.poll() is None  # the reply's grace
                a.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                alive = a.poll() is None
                gate.set()
                assert await reader.end(25)
        status = await _final_status(migrated_database_url, started["chatId"], 10)
        code = await _exited(a, 30)
    assert alive, procs.output("a")
    assert reader.final is not None, (reader.events, reader.torn)
    assert reader.final[0] == "done", reader.events
    assert status == ("complete", "one two")
    assert code in STOPPED, procs.output("a")


async def test_s21c_without_a_drain_sigterm_closes_the_port_at_once_as_before(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """``WHALLI_SHUTDOWN_DRAIN_S`` unset (0): no draining at all: the first SIGTERM closes the
    listening socket while a running reply keeps the process alive for its grace."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        provider.script(Reply(chunks=openai_pieces(["a", " b"]), gate=gate, gate_after=2))
        env = _env(stack_urls, provider.url, _queue(unique))
        a, a_url = await procs.serve(env, "a")
        answers: list[object] = []
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                user = await _register(client, a_url)
                await _start(client, a_url, user["auth"])
                a.send_signal(signal.SIGTERM)
                for _ in range(50):  # a guard against a hang
                    answers.append(await _ready(client, a_url))
                    if isinstance(answers[-1], str):
                        break
                    await asyncio.sleep(0.1)
                alive = a.poll() is None
        finally:
            gate.set()
        code = await _exited(a, 25)
    assert DRAINING not in answers, answers
    assert isinstance(answers[-1], str), answers
    assert alive
    assert "shutdown_draining" not in procs.output("a")
    assert code in STOPPED


# --- reader leases --------------------------------------------------------------------------------
def _big(tokens: int, size: int) -> list[str]:
    return [f"{i:05d}" + "\u6f22" * (size - 5) for i in range(tokens)]


async def test_s21c_a_slow_reader_under_backpressure_is_not_counted_gone(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A user watches a long reply over a slow link (or a tab the browser throttles): the
    server's writes wait on the client. The reader is still attached, so the reply must not be
    stopped as unread (``WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S=2``, lease 3 s)."""
    # 3.8 M characters of 3 bytes each (11 MB): more than the socket buffers hold (the server's
    # send buffer grows to 4 MB by Linux's default), within this model's output cap (128,000
    # tokens of 32 characters: 4,096,000 characters)
    deltas = _big(3800, 1000)
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        pieces = openai_pieces(deltas)
        provider.script(Reply(chunks=pieces, gate=gate, gate_after=1 + len(deltas)))
        env = _env(
            stack_urls, provider.url, _queue(unique), WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S="2"
        )
        _, a_url = await procs.serve(env, "a")
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            started = await _start(client, a_url, user["auth"], BIG_MODEL)
            session, chat_id = started["sessionId"], started["chatId"]
            try:
                async with _slow_stream(a_url, session) as stream:
                    await _read_until(stream, b"event: token", 20)
                    # the client reads nothing more for a while (the provider holds the end)
                    unread = await _unread_for(migrated_database_url, chat_id, 9)
                    gate.set()
                    tail = await _read_until(stream, b"event: ", 25)
                    tail += await _read_until(stream, b"\n\n", 25)
                    ended = await _final_status(migrated_database_url, chat_id, 15)
            finally:
                gate.set()
    assert unread not in FINAL
    assert tail
    assert ended == ("complete", "".join(deltas))


async def test_s21c_a_reader_that_resumes_with_last_event_id_keeps_the_reply_alive(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A browser's EventSource reconnects (``Last-Event-ID``) after its connection broke: the
    new connection is a reader, renewed while it waits, so the reply runs to its end."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        provider.script(Reply(chunks=openai_pieces(["first", " second"]), gate=gate, gate_after=2))
        env = _env(
            stack_urls, provider.url, _queue(unique), WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S="2"
        )
        (_, a_url), (_, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                user = await _register(client, a_url)
                started = await _start(client, a_url, user["auth"])
                session, chat_id = started["sessionId"], started["chatId"]
                last, token = None, False
                async with client.stream(
                    "GET", f"{a_url}/api/chat/stream?sessionId={session}"
                ) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("id:"):
                            last = line.partition(":")[2].strip()
                        token = token or line == "event: token"
                        if token and line == "" and last is not None:
                            break  # the first token's frame, and its id: the connection drops
                assert last is not None
                resumed = Reader(client, b_url, session)
                resumed._url += f"&lastEventId={last}"
                async with resumed:
                    unread = await _unread_for(migrated_database_url, chat_id, 8)
                    gate.set()
                    assert await resumed.end(20)
                status = await _final_status(migrated_database_url, chat_id, 10)
        finally:
            gate.set()
    assert unread not in FINAL
    assert resumed.final is not None, (resumed.events, resumed.torn)
    assert resumed.final[0] == "done", resumed.events
    assert status == ("complete", "first second")


async def test_s21c_one_tab_of_many_on_another_process_keeps_the_reply_alive(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """Four tabs read a reply A generates, from B; three close. The one left (on another
    process than the producer) keeps it alive past lease + abandon time; every lease of the
    tabs that left is gone at once."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        provider.script(Reply(chunks=openai_pieces(["one", " two"]), gate=gate, gate_after=2))
        env = _env(
            stack_urls, provider.url, _queue(unique), WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S="2"
        )
        (_, a_url), (_, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                user = await _register(client, a_url)
                started = await _start(client, a_url, user["auth"])
                session, chat_id = started["sessionId"], started["chatId"]
                tabs = [Reader(client, b_url, session) for _ in range(4)]
                for tab in tabs:
                    await tab.__aenter__()
                for tab in tabs:
                    await tab.tokens(1)
                counted = await _leases(stack_urls, session)
                for tab in tabs[1:]:
                    await tab.__aexit__()
                left = -1
                for _ in range(50):  # the leaving is asynchronous (a guard against a hang)
                    left = await _leases(stack_urls, session)
                    if left == 1:
                        break
                    await asyncio.sleep(0.1)
                unread = await _unread_for(migrated_database_url, chat_id, 8)
                gate.set()
                assert await tabs[0].end(20)
                await tabs[0].__aexit__()
                status = await _final_status(migrated_database_url, chat_id, 10)
        finally:
            gate.set()
    assert counted == 4
    assert left == 1
    assert unread not in FINAL
    assert status == ("complete", "one two")


async def test_s21c_a_reply_whose_only_reader_elsewhere_is_killed_is_stopped_with_its_text(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """A generates; its only reader is on B, which is killed (SIGKILL) with the stream open:
    the lease runs out and A stops the reply as unread, saved ``aborted`` with its text, while
    its lease entry is gone from Redis (ended leases are not counted)."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        provider.script(_held("first", " second"))
        env = _env(
            stack_urls, provider.url, _queue(unique), WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S="2"
        )
        (_, a_url), (b, b_url) = await asyncio.gather(procs.serve(env, "a"), procs.serve(env, "b"))
        async with httpx.AsyncClient(timeout=30) as client:
            user = await _register(client, a_url)
            started = await _start(client, a_url, user["auth"])
            async with Reader(client, b_url, started["sessionId"]) as reader:
                await reader.tokens(2)
                assert await _leases(stack_urls, started["sessionId"]) == 1
                b.kill()
                b.wait()
                assert await reader.end(10)
            status = await _final_status(migrated_database_url, started["chatId"], 15)
    assert status == ("aborted", "first second")


async def test_s21c_leases_survive_a_lost_script_cache_through_the_lean_client(
    stack_urls: StackUrls, unique: str
) -> None:
    """A restarted Redis has no scripts loaded: the new _JOIN and _READERS scripts, run
    through the lean client (EVALSHA), load again (EVAL) and answer."""
    prefix = f"whalli:test:{unique}:"
    async with (
        contextlib.asynccontextmanager(create_redis)(stack_urls.redis_url) as client,
        contextlib.asynccontextmanager(create_resp_client)(stack_urls.redis_url) as lean,
    ):
        stream = RedisReplyStream(client, prefix=prefix, lean=lean)
        session = uuid.uuid4().hex
        await stream.reader_joined(session, "tab", 60)
        await client.script_flush()
        await stream.reader_joined(session, "other", 60)
        counted = await stream.readers_of([session])
        await client.script_flush()
        counted_again = await stream.readers_of([session, "nobody"])
        await stream.reader_left(session, "tab")
        after_leaving = await stream.readers_of([session])
        await client.delete(f"{prefix}reply-leases:{session}")
    assert counted == {session: 2}
    assert counted_again == {session: 2, "nobody": 0}
    assert after_leaving == {session: 1}


async def test_s21c_a_lease_key_expires_with_its_last_lease_and_counts_thousands_of_sessions(
    stack_urls: StackUrls, unique: str
) -> None:
    """The leases' key goes with its last lease (no key left behind by a killed process), and
    ``readers_of`` answers for 2,500 sessions (more than one batch) with each one's count."""
    prefix = f"whalli:test:{unique}:"
    async with (
        contextlib.asynccontextmanager(create_redis)(stack_urls.redis_url) as client,
        contextlib.asynccontextmanager(create_resp_client)(stack_urls.redis_url) as lean,
    ):
        stream = RedisReplyStream(client, prefix=prefix, lean=lean)
        sessions = [uuid.uuid4().hex for _ in range(2500)]
        read = sessions[::500]  # one in each batch and some
        for i, session in enumerate(read):
            for tab in range(i + 1):
                await stream.reader_joined(session, f"tab-{tab}", 60)
        counts = await stream.readers_of(sessions)
        short = uuid.uuid4().hex
        await stream.reader_joined(short, "killed", 0.3)
        await stream.reader_joined(short, "killed-too", 0.2)
        ttl = await client.pttl(f"{prefix}reply-leases:{short}")
        await asyncio.sleep(0.6)
        gone = not await client.exists(f"{prefix}reply-leases:{short}")
        for session in read:
            await client.delete(f"{prefix}reply-leases:{session}")
    assert len(counts) == len(sessions)
    assert {s: n for s, n in counts.items() if n} == {s: i + 1 for i, s in enumerate(read)}
    assert 0 < ttl <= 300
    assert gone


async def test_s21c_a_reader_on_a_process_of_the_previous_release_keeps_the_reply_alive(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """During a rolling deploy processes of the previous release (before the leases) still
    serve streams: their reader counts itself as the previous release did (``INCR`` of
    ``whalli:reply-readers:{session}``, one hour). A reply a new process generates and a user
    reads through an old one must not be stopped as unread."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        gate = asyncio.Event()
        provider.script(Reply(chunks=openai_pieces(["one", " two"]), gate=gate, gate_after=2))
        env = _env(
            stack_urls, provider.url, _queue(unique), WHALLI_CHAT_CANCEL_ABANDONED_AFTER_S="2"
        )
        _, a_url = await procs.serve(env, "a")
        key = ""
        try:
            async with (
                httpx.AsyncClient(timeout=30) as client,
                Redis.from_url(stack_urls.redis_url) as redis,
            ):
                user = await _register(client, a_url)
                started = await _start(client, a_url, user["auth"])
                key = f"whalli:reply-readers:{started['sessionId']}"
                # the old release's reader_joined: INCR and EXPIRE 3600, in one transaction
                async with redis.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, 3600)
                    await pipe.execute()
                unread = await _unread_for(migrated_database_url, started["chatId"], 8)
                gate.set()
                status = await _final_status(migrated_database_url, started["chatId"], 10)
                await redis.delete(key)
        finally:
            gate.set()
    assert unread not in FINAL
    assert status == ("complete", "one two")


async def test_s21c_a_sigterm_during_start_up_stops_the_process_whatever_the_drain(
    stack_urls: StackUrls, migrated_database_url: str, unique: str, tmp_path: Path
) -> None:
    """SIGTERM while the app still starts (before the drain's handler is installed, or just
    after): the process neither hangs nor keeps serving; it exits as a stopped process."""
    async with FakeProviderServer(openai_default()) as provider, processes(tmp_path) as procs:
        env = _env(stack_urls, provider.url, _queue(unique), WHALLI_SHUTDOWN_DRAIN_S="2")
        a = procs._spawn(["serve", "--port", str(free_port())], env, "a", None)
        log = tmp_path / "a" / "output.log"
        for _ in range(300):  # a guard against a hang
            if "Waiting for application startup" in log.read_text(errors="replace"):
                break
            await asyncio.sleep(0.01)
        a.send_signal(signal.SIGTERM)
        code = await _exited(a, 20)
    assert code in STOPPED, procs.output("a")
