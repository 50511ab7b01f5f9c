"""Bug hunt on the lean multiplexed Redis client (``adapters/redis/resp``): answers under
concurrency, cancellation and timeouts, connecting and closing races, large and unexpected
replies, argument types, and what the adapters built on it return next to redis-py.

Four defects it found are fixed (an ``aclose`` during a connect kept the connection, an empty
command took the next caller's answer, an array arriving in many reads was parsed again on
each, a dropped rate-limit decision warned); their tests stay, with the behaviour that held."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import secrets
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from redis import exceptions as rx
from redis.asyncio import Redis

from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.redis import resp
from whalli.adapters.redis.cache import RedisCache
from whalli.adapters.redis.chat_sessions import RedisChatSessionStore
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.rate_limiter import RedisRateLimiter
from whalli.adapters.redis.resp import RespClient, _Connection, encode_command
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.services.rate_limits import RateLimitPolicy, RequestLimits

redis_resource = asynccontextmanager(create_redis)


# --- a small RESP server on loopback, to misbehave as asked --------------------------------


@dataclass
class Fake:
    url: str = ""
    port: int = 0
    # the commands each connection received, in connection order
    commands: list[list[list[bytes]]] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len(self.commands)

    def names(self, connection: int) -> list[bytes]:
        return [c[0].upper() for c in self.commands[connection]]


Handler = Callable[[Fake, int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_command(reader: asyncio.StreamReader) -> list[bytes] | None:
    """One command as the client frames it (an array of bulk strings); None at EOF."""
    try:
        line = await reader.readline()
        if not line:
            return None
        assert line[:1] == b"*", line
        args = []
        for _ in range(int(line[1:-2])):
            header = await reader.readline()
            args.append((await reader.readexactly(int(header[1:-2]) + 2))[:-2])
        return args
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def until_eof(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class Responder:
    """Answers as Redis would, for the few commands these tests send."""

    def __init__(self) -> None:
        self.queued: list[bytes] | None = None

    def answer(self, args: list[bytes]) -> bytes:
        name = args[0].upper()
        if name == b"MULTI":
            self.queued = []
            return b"+OK\r\n"
        if name == b"EXEC":
            queued, self.queued = self.queued or [], None
            return b"*%d\r\n" % len(queued) + b"".join(queued)
        reply = self._plain(name, args)
        if self.queued is not None:
            self.queued.append(reply)
            return b"+QUEUED\r\n"
        return reply

    @staticmethod
    def _plain(name: bytes, args: list[bytes]) -> bytes:
        if name in (b"AUTH", b"SELECT", b"SET"):
            return b"+OK\r\n"
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"ECHO":
            return bulk(args[1])
        if name == b"GET":
            return b"$-1\r\n"
        return b"-ERR unknown command\r\n"


async def respond(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
    """Answer every command of this connection until EOF."""
    responder = Responder()
    while (command := await read_command(reader)) is not None:
        fake.commands[index].append(command)
        writer.write(responder.answer(command))
        await writer.drain()


@asynccontextmanager
async def serve(handler: Handler, *, port: int = 0, userinfo: str = "") -> AsyncIterator[Fake]:
    fake = Fake()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fake.writers.append(writer)
        index = len(fake.commands)
        fake.commands.append([])
        try:
            await handler(fake, index, reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(run, "127.0.0.1", port)
    fake.port = server.sockets[0].getsockname()[1]
    fake.url = f"redis://{userinfo}127.0.0.1:{fake.port}/0"
    try:
        yield fake
    finally:
        server.close()
        for writer in fake.writers:
            writer.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def key() -> str:
    return f"whalli:test:resp-hunt:{secrets.token_hex(8)}"


@pytest.fixture
async def lean(stack_urls: StackUrls) -> AsyncIterator[RespClient]:
    # a generous timeout: MB values on a machine busy with other test runs
    client = RespClient(stack_urls.redis_url, command_timeout=30.0)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis(stack_urls: StackUrls) -> AsyncIterator[Redis]:
    async with redis_resource(stack_urls.redis_url, socket_timeout=30.0) as client:
        yield client


# --- connecting: concurrent first use, failures, cancellation, aclose ----------------------


async def test_callers_before_the_connection_share_one_failed_then_one_good_connect() -> None:
    port = free_port()
    client = RespClient(f"redis://127.0.0.1:{port}/0")
    opens = 0
    real_open = client._open

    async def counting_open() -> _Connection:
        nonlocal opens
        opens += 1
        return await real_open()

    client._open = counting_open  # type: ignore[method-assign]
    try:
        failed = await asyncio.gather(
            *(client.execute("ECHO", f"e{i}") for i in range(50)), return_exceptions=True
        )
        assert all(isinstance(e, rx.ConnectionError) for e in failed), failed
        assert opens == 1  # one attempt shared by all fifty

        async with serve(respond, port=port) as fake:
            answers = await asyncio.gather(*(client.execute("ECHO", f"e{i}") for i in range(50)))
            assert answers == [f"e{i}".encode() for i in range(50)]
            assert opens == 2
            assert fake.connections == 1
            await client.aclose()
    finally:
        await client.aclose()


def held_auth(authing: asyncio.Event, release: asyncio.Event) -> Any:
    """A server whose answer to AUTH waits for ``release`` (``authing`` set once asked)."""

    async def slow_auth(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
        command = await read_command(reader)
        assert command is not None
        fake.commands[index].append(command)
        authing.set()
        await release.wait()
        writer.write(b"+OK\r\n")
        await respond(fake, index, reader, writer)

    return slow_auth


async def test_a_caller_cancelled_while_connecting_sends_nothing_and_others_proceed() -> None:
    authing, release = asyncio.Event(), asyncio.Event()
    slow_auth = held_auth(authing, release)

    async with serve(slow_auth, userinfo=":pw@") as fake:
        client = RespClient(fake.url)
        try:
            leaving = asyncio.ensure_future(client.execute("ECHO", "leaving"))
            staying = asyncio.ensure_future(client.execute("ECHO", "staying"))
            await authing.wait()
            leaving.cancel()
            release.set()
            assert await staying == b"staying"
            assert leaving.cancelled()
            assert await client.execute("ECHO", "next") == b"next"
            assert fake.connections == 1
            assert fake.commands[0] == [
                [b"AUTH", b"pw"],
                [b"ECHO", b"staying"],
                [b"ECHO", b"next"],
            ]
        finally:
            release.set()
            await client.aclose()


async def test_aclose_while_connecting_leaves_no_connection_open() -> None:
    authing, release = asyncio.Event(), asyncio.Event()
    slow_auth = held_auth(authing, release)

    async with serve(slow_auth, userinfo=":pw@") as fake:
        client = RespClient(fake.url)
        try:
            waiting = asyncio.ensure_future(client.execute("ECHO", "after-close"))
            await authing.wait()
            await client.aclose()  # shutdown, with a connect under way
            release.set()
            outcome: Any = (await asyncio.gather(waiting, return_exceptions=True))[0]
            await asyncio.sleep(0.05)  # let anything sent reach the server
            assert [b"ECHO", b"after-close"] not in fake.commands[0]
            assert isinstance(outcome, rx.ConnectionError), outcome
            assert client._connection is None or client._connection.closed
        finally:
            release.set()
            await client.aclose()  # closes the leaked connection, if any


async def test_aclose_fails_the_commands_in_flight_as_redis_py_errors() -> None:
    async def silent(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
        await until_eof(reader)

    async with serve(silent) as fake:
        client = RespClient(fake.url, command_timeout=30.0)
        cache = RedisCache(Redis(), lean=client)
        try:
            in_flight = [
                asyncio.ensure_future(client.execute("GET", "a")),
                asyncio.ensure_future(client.transaction(("SET", "a", "1"))),
                asyncio.ensure_future(cache.get("b")),
            ]
            await asyncio.sleep(0.05)
            await client.aclose()
            outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
            assert isinstance(outcomes[0], rx.ConnectionError)
            assert isinstance(outcomes[1], rx.ConnectionError)
            assert isinstance(outcomes[2], ServiceUnavailable)
        finally:
            await client.aclose()


async def test_an_auth_error_during_connect_logs_nothing_unretrieved() -> None:
    async def wrong_password(
        fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any
    ) -> None:
        for _ in range(2):  # AUTH, SELECT
            command = await read_command(reader)
            assert command is not None
            fake.commands[index].append(command)
        writer.write(
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
            b"-NOAUTH Authentication required.\r\n"
        )
        await writer.drain()
        await until_eof(reader)

    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(str(context.get("message"))))
    try:
        async with serve(wrong_password, userinfo=":bad@") as fake:
            client = RespClient(fake.url.replace("/0", "/2"))
            outcome = (await asyncio.gather(client.execute("PING"), return_exceptions=True))[0]
            assert isinstance(outcome, rx.AuthenticationError), outcome
            assert fake.names(0) == [b"AUTH", b"SELECT"]
            await client.aclose()
            del client, outcome
            for _ in range(3):
                gc.collect()
                await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert not [m for m in reported if "never retrieved" in m], reported


# --- concurrency, cancellation and a timeout with an answer half received -----------------


async def test_answers_never_reach_another_caller_amid_cancels_splits_and_a_timeout() -> None:
    rng = random.Random(1616)

    async def fragmenting(
        fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any
    ) -> None:
        responder = Responder()
        while (command := await read_command(reader)) is not None:
            fake.commands[index].append(command)
            if command[-1] == b"stall":  # half an answer, then nothing more
                writer.write(b"$5\r\nst")
                await writer.drain()
                await until_eof(reader)
                return
            reply = responder.answer(command)
            cut = rng.randrange(1, len(reply))
            writer.write(reply[:cut])
            await writer.drain()
            await asyncio.sleep(0)
            writer.write(reply[cut:])
            await writer.drain()

    async def cancel_later(task: asyncio.Future[Any], spins: int) -> None:
        for _ in range(spins):
            await asyncio.sleep(0)
        task.cancel()

    async with serve(fragmenting) as fake:
        client = RespClient(fake.url, command_timeout=0.5)
        try:
            values = [f"v{i}:" + "x" * rng.randrange(0, 3000) for i in range(300)]
            values[200] = "stall"
            calls: list[asyncio.Future[Any]] = []
            for i, value in enumerate(values):
                if i % 7 == 3:
                    calls.append(asyncio.ensure_future(client.transaction(("ECHO", value))))
                else:
                    calls.append(asyncio.ensure_future(client.execute("ECHO", value)))
            cancellers = [
                asyncio.ensure_future(cancel_later(calls[i], rng.randrange(0, 40)))
                for i in rng.sample(range(300), 80)
                if i != 200
            ]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            await asyncio.gather(*cancellers)

            answered = {c[-1].decode() for c in fake.commands[0]} - {"stall"}
            assert isinstance(outcomes[200], rx.TimeoutError)
            for i, (value, outcome) in enumerate(zip(values, outcomes, strict=True)):
                if isinstance(outcome, asyncio.CancelledError):
                    continue
                if isinstance(outcome, rx.TimeoutError):
                    continue
                assert outcome in (value.encode(), [value.encode()]), (i, outcome)
                assert value in answered
            assert any(isinstance(o, rx.TimeoutError) for i, o in enumerate(outcomes) if i > 200)

            # the next commands get a new connection, and their own answers on it
            after = await asyncio.gather(*(client.execute("ECHO", f"n{i}") for i in range(50)))
            assert after == [f"n{i}".encode() for i in range(50)]
            assert fake.connections == 2
        finally:
            await client.aclose()


async def test_a_timeout_with_an_answer_half_received_leaves_no_bytes_behind() -> None:
    async def half_then_fine(
        fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any
    ) -> None:
        if index == 0:
            for _ in range(2):
                command = await read_command(reader)
                assert command is not None
                fake.commands[index].append(command)
            writer.write(b"$3\r\none\r\n$10\r\nhalf")  # first answered, second cut
            await writer.drain()
            await until_eof(reader)
            return
        await respond(fake, index, reader, writer)

    async with serve(half_then_fine) as fake:
        client = RespClient(fake.url, command_timeout=0.2)
        try:
            first = asyncio.ensure_future(client.execute("ECHO", "one"))
            second = asyncio.ensure_future(client.execute("ECHO", "0123456789"))
            assert await first == b"one"
            with pytest.raises(rx.TimeoutError):
                await second
            assert await client.execute("ECHO", "fresh") == b"fresh"
            assert await client.execute("GET", "k") is None
            assert fake.connections == 2
        finally:
            await client.aclose()


async def test_real_redis_answers_reach_their_callers_amid_cancels_and_transactions(
    lean: RespClient,
) -> None:
    rng = random.Random(1617)
    base = key()
    await lean.transaction(*(("SET", f"{base}:{i}", f"s{i}", "EX", 60) for i in range(50)))

    def call(i: int) -> tuple[asyncio.Future[Any], Any]:
        kind = i % 4
        if kind == 0:
            return asyncio.ensure_future(lean.execute("ECHO", f"e{i}")), f"e{i}".encode()
        if kind == 1:
            j = i % 50
            return asyncio.ensure_future(lean.execute("GET", f"{base}:{j}")), f"s{j}".encode()
        if kind == 2:
            expected = [f"t{i}".encode(), f"u{i}".encode()]
            future = asyncio.ensure_future(lean.transaction(("ECHO", f"t{i}"), ("ECHO", f"u{i}")))
            return future, expected
        sent = lean.send_now("ECHO", f"n{i}")
        if sent is None:
            return asyncio.ensure_future(lean.execute("ECHO", f"n{i}")), f"n{i}".encode()
        return sent, f"n{i}".encode()

    for _ in range(3):
        calls = [call(i) for i in range(400)]
        for future, _ in rng.sample(calls, 120):
            if rng.random() < 0.5:
                future.cancel()
            else:
                asyncio.get_running_loop().call_later(rng.random() / 1000, future.cancel)
        outcomes = await asyncio.gather(*(f for f, _ in calls), return_exceptions=True)
        for (_, expected), outcome in zip(calls, outcomes, strict=True):
            if not isinstance(outcome, asyncio.CancelledError):
                assert outcome == expected
    assert await lean.execute("ECHO", "last") == b"last"


async def test_an_empty_command_is_refused_rather_than_left_unanswered(
    stack_urls: StackUrls,
) -> None:
    client = RespClient(stack_urls.redis_url, command_timeout=0.5)
    try:
        await client.execute("PING")  # connected
        empty = asyncio.ensure_future(client.execute())
        other = asyncio.ensure_future(client.execute("ECHO", "mine"))
        outcomes = await asyncio.gather(empty, other, return_exceptions=True)
        assert outcomes[1] == b"mine", outcomes
        assert not isinstance(outcomes[0], bytes), outcomes
    finally:
        await client.aclose()


# --- large values and replies split over many reads ----------------------------------------


async def test_megabyte_values_split_over_many_reads_reach_their_callers(
    lean: RespClient, redis: Redis
) -> None:
    k = key()
    chunk = os.urandom(1 << 20)
    big = (chunk + b"\r\n$5\r\nfake!\r\n*2\r\n") * 12  # ~12 MB, RESP-looking bytes inside
    assert await lean.execute("SET", k, big, "EX", 60) == b"OK"
    results = await asyncio.gather(
        lean.execute("ECHO", "before"),
        lean.execute("GET", k),
        lean.execute("STRLEN", k),
        lean.execute("GET", k),
        lean.execute("ECHO", "after"),
    )
    assert results[0] == b"before"
    assert results[1] == big
    assert results[2] == len(big)
    assert results[3] == big
    assert results[4] == b"after"
    assert await redis.get(k) == big
    lean_cache = RedisCache(redis, prefix="", lean=lean)
    assert await lean_cache.get(k) == await RedisCache(redis, prefix="").get(k) == big
    await redis.delete(k)


async def test_a_large_array_reply_is_right_whatever_the_reads(
    lean: RespClient, redis: Redis
) -> None:
    k = key()
    items = [os.urandom(random.randrange(0, 40)) for _ in range(30_000)]
    for start in range(0, len(items), 5_000):
        await redis.rpush(k, *items[start : start + 5_000])
    await redis.expire(k, 60)
    assert await lean.execute("LRANGE", k, 0, -1) == items
    await redis.delete(k)


class _Transport(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass


def test_an_array_split_over_many_reads_is_parsed_about_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count = 20_000
    stream = b"*%d\r\n" % count + b"$3\r\nabc\r\n" * count
    calls = 0
    real_parse = resp.parse_reply

    def counting(buf: bytes | bytearray, pos: int) -> Any:
        nonlocal calls
        calls += 1
        return real_parse(buf, pos)

    monkeypatch.setattr(resp, "parse_reply", counting)
    loop = asyncio.new_event_loop()
    try:
        connection = _Connection(loop, timeout=60.0)
        connection.connection_made(_Transport())
        answer = connection.send(encode_command(("LRANGE", "k", 0, -1)))
        for start in range(0, len(stream), 4096):  # 44 reads
            connection.data_received(stream[start : start + 4096])
        assert answer.result() == [b"abc"] * count
        connection._fail(rx.ConnectionError("done"))
    finally:
        loop.close()
    assert calls <= 2 * (count + 1), calls


# --- transactions cut short, unexpected replies --------------------------------------------


async def test_a_connection_closed_mid_transaction_fails_it_once_and_the_next_runs() -> None:
    async def cut_first(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
        if index == 0:
            for _ in range(4):  # MULTI, SET, SET, EXEC
                command = await read_command(reader)
                assert command is not None
                fake.commands[index].append(command)
            writer.write(b"+OK\r\n+QUEUED\r\n")  # then the server goes away
            await writer.drain()
            return
        await respond(fake, index, reader, writer)

    async with serve(cut_first) as fake:
        client = RespClient(fake.url)
        try:
            with pytest.raises(rx.ConnectionError):
                await client.transaction(("SET", "a", "1"), ("SET", "b", "2"))
            assert await client.transaction(("SET", "a", "1"), ("SET", "b", "2")) == [
                b"OK",
                b"OK",
            ]
            assert fake.names(0) == [b"MULTI", b"SET", b"SET", b"EXEC"]  # not sent again
            assert fake.names(1) == [b"MULTI", b"SET", b"SET", b"EXEC"]
        finally:
            await client.aclose()

    # through the session store: the domain's error, nothing sent twice
    async with serve(cut_first) as fake:
        client = RespClient(fake.url)
        store = RedisChatSessionStore(Redis(), lean=client)
        now = datetime.now(UTC)
        session = _session(now)
        try:
            with pytest.raises(ServiceUnavailable, match="connection failed"):
                await store.save(session, now)
            await store.save(session, now)
            assert fake.names(0) == [b"MULTI", b"SET", b"SET", b"EXEC"]
        finally:
            await client.aclose()


async def test_a_runtime_error_inside_exec_is_raised_as_redis_pys_pipeline_does(
    lean: RespClient, redis: Redis
) -> None:
    # (found returned as a list element; redis-py's pipeline raises the first error in EXEC)
    k = key()
    await redis.set(k, "text", ex=60)
    with pytest.raises(rx.ResponseError):
        await lean.transaction(("INCR", k), ("APPEND", k, "!"))
    assert await redis.get(k) == b"text!"  # the others ran: a transaction is not rolled back
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(k)
        pipe.get(k)
        with pytest.raises(rx.ResponseError):
            await pipe.execute()
    await redis.delete(k)


@pytest.mark.parametrize(
    "reply",
    [b"_\r\n", b"#t\r\n", b",1.5\r\n", b"%1\r\n+a\r\n:1\r\n", b">2\r\n+x\r\n+y\r\n", b"\r\n"],
    ids=["null", "boolean", "double", "map", "push", "empty-line"],
)
async def test_a_resp3_or_unknown_reply_fails_as_a_connection_error_and_reconnects(
    reply: bytes,
) -> None:
    async def odd_first(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
        if index == 0:
            command = await read_command(reader)
            assert command is not None
            fake.commands[index].append(command)
            writer.write(reply)
            await writer.drain()
            await until_eof(reader)
            return
        await respond(fake, index, reader, writer)

    async with serve(odd_first) as fake:
        client = RespClient(fake.url)
        cache = RedisCache(Redis(), lean=client)
        try:
            with pytest.raises(ServiceUnavailable, match="connection failed"):
                await cache.get("k")
            assert await cache.get("k") is None
            assert await client.execute("ECHO", "ok") == b"ok"
            assert fake.connections == 2
        finally:
            await client.aclose()


# --- arguments -----------------------------------------------------------------------------


async def test_bool_none_and_buffers_are_refused_before_anything_is_written(
    lean: RespClient,
) -> None:
    k = key()
    for bad in (True, False, None, bytearray(b"x"), memoryview(b"x")):
        with pytest.raises(TypeError):
            await lean.execute("SET", k, bad)  # type: ignore[arg-type]
    # nothing half-written: the next answers are still the next commands'
    assert await lean.execute("ECHO", "still-aligned") == b"still-aligned"
    assert await lean.execute("GET", k) is None


async def test_float_and_int_arguments_go_out_as_redis_py_sends_them(
    lean: RespClient, redis: Redis
) -> None:
    for value in (0.1, 1e16, 1.5e-7, -0.0, float("inf"), 2**63 - 1, -(2**63)):
        ours = await lean.execute("ECHO", value)
        theirs = await redis.execute_command("ECHO", value)  # type: ignore[no-untyped-call]
        assert ours == theirs, value
    k = key()
    assert await lean.execute("INCRBYFLOAT", k, 1e16) == b"10000000000000000"
    assert await lean.execute("INCRBYFLOAT", k, 0.5) == b"10000000000000000.5"
    assert await lean.execute("ZADD", k + ":z", float("inf"), "m") == 1
    assert await lean.execute("ZSCORE", k + ":z", "m") == b"inf"
    await redis.delete(k, k + ":z")


# --- the adapters: lean next to redis-py ---------------------------------------------------


async def _cache_ops(cache: RedisCache) -> list[Any]:
    out: list[Any] = [await cache.get("a")]
    await cache.set("a", b"1", 60)
    out.append(await cache.get("a"))
    out.append(await cache.add("a", b"2", 60))
    out.append(await cache.add("b", b"3", 60))
    out.append(await cache.pop("b"))
    out.append(await cache.pop("b"))
    await cache.delete("a")
    out.append(await cache.get("a"))
    return out


async def test_the_cache_returns_the_same_through_lean_and_redis_py(
    lean: RespClient, redis: Redis
) -> None:
    through_lean = await _cache_ops(RedisCache(redis, prefix=key() + ":", lean=lean))
    through_redis_py = await _cache_ops(RedisCache(redis, prefix=key() + ":"))
    assert through_lean == through_redis_py == [None, b"1", False, True, b"3", None, None]
    assert [type(v) for v in through_lean] == [type(v) for v in through_redis_py]


def _session(now: datetime) -> ChatSession:
    return ChatSession.open(
        id=secrets.token_urlsafe(32),
        user_id=uuid4(),
        chat_id=uuid4(),
        project_id=uuid4(),
        user_message_id=uuid4(),
        reply_message_id=uuid4(),
        model="test-model",
        now=now,
    )


async def test_the_session_store_saves_the_same_through_lean_and_redis_py(
    lean: RespClient, redis: Redis
) -> None:
    now = datetime.now(UTC)
    seen = []
    for with_lean in (True, False):
        prefix = key() + ":"
        store = RedisChatSessionStore(
            redis, prefix=prefix, reply_prefix=prefix + "reply:", lean=lean if with_lean else None
        )
        session = _session(now)
        await store.save(session, now)
        assert await store.get(session.id) == session
        assert session.reply_message_id is not None
        live = await store.live_session_ids([session.reply_message_id, uuid4()])
        assert live == {session.reply_message_id: session.id}
        ttls = [
            await redis.pttl(prefix + session.id),
            await redis.pttl(prefix + "reply:" + str(session.reply_message_id)),
        ]
        assert all(0 < t <= 600_000 for t in ttls), ttls
        seen.append((await redis.type(prefix + session.id), len(live)))
        await store.delete(session.id)
        assert await redis.exists(prefix + session.id) == 0
    assert seen[0] == seen[1]


async def test_the_rate_limiter_counts_the_same_through_lean_and_redis_py(
    lean: RespClient, redis: Redis
) -> None:
    decisions = []
    for with_lean in (True, False):
        limiter = RedisRateLimiter(redis, prefix=key() + ":", lean=lean if with_lean else None)
        decisions.append(
            [
                (d.allowed, d.remaining, d.metered)
                for d in [await limiter.hit("user:1", limit=3, window_seconds=60) for _ in range(5)]
            ]
        )
    assert decisions[0] == decisions[1]
    assert decisions[0] == [
        (True, 2, True),
        (True, 1, True),
        (True, 0, True),
        (False, 0, True),
        (False, 0, True),
    ]


# --- the rate limiter's fail-open policy on a broken lean connection -----------------------


async def _silent(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
    await until_eof(reader)


async def _closes(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
    await read_command(reader)


async def _malformed(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
    await read_command(reader)
    writer.write(b"$abc\r\n")
    await until_eof(reader)


async def _loading(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
    while await read_command(reader) is not None:
        writer.write(b"-LOADING Redis is loading the dataset in memory\r\n")


async def _noscript_then_close(
    fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any
) -> None:
    await read_command(reader)
    writer.write(b"-NOSCRIPT No matching script. Please use EVAL.\r\n")
    await read_command(reader)  # the EVAL: left unanswered, the connection closed


BROKEN: dict[str, Handler | None] = {
    "refused": None,
    "silent": _silent,
    "closes": _closes,
    "malformed": _malformed,
    "loading": _loading,
    "noscript-then-close": _noscript_then_close,
}


@asynccontextmanager
async def broken_url(kind: str) -> AsyncIterator[str]:
    handler = BROKEN[kind]
    if handler is None:
        yield f"redis://127.0.0.1:{free_port()}/0"
        return
    async with serve(handler) as fake:
        yield fake.url


@pytest.mark.parametrize("kind", list(BROKEN))
async def test_the_rate_limits_fail_open_on_a_broken_lean_connection(kind: str) -> None:
    async with broken_url(kind) as url:
        client = RespClient(url, connect_timeout=0.5, command_timeout=0.2)
        try:
            limiter = RedisRateLimiter(Redis(), prefix=key() + ":", lean=client)
            open_limits = RequestLimits(limiter, RateLimitPolicy())
            decision = await open_limits.check_request(None, "203.0.113.7")
            assert decision.allowed
            assert not decision.metered
            login = await open_limits.check_login("someone@example.com", "203.0.113.7")
            assert login.allowed
            assert not login.metered

            strict = RequestLimits(limiter, RateLimitPolicy(fail_open=False))
            with pytest.raises(ServiceUnavailable):
                await strict.check_request(None, "203.0.113.7")
        finally:
            await client.aclose()


def _answers_once_then(misbehave: Handler) -> Handler:
    async def handler(fake: Fake, index: int, reader: asyncio.StreamReader, writer: Any) -> None:
        if index == 0:
            command = await read_command(reader)
            assert command is not None
            fake.commands[index].append(command)
            writer.write(b":%d\r\n" % ((1 << 32) + 60_000))  # one hit, 60 s left
            await writer.drain()
        await misbehave(fake, index, reader, writer)

    return handler


@pytest.mark.parametrize("kind", [k for k, h in BROKEN.items() if h is not None])
async def test_the_rate_limits_fail_open_when_the_open_lean_connection_breaks(kind: str) -> None:
    # the connection open, so the hit is written by send_now at call time, not by execute
    misbehave = BROKEN[kind]
    assert misbehave is not None
    async with serve(_answers_once_then(misbehave)) as fake:
        client = RespClient(fake.url, connect_timeout=0.5, command_timeout=0.2)
        try:
            limiter = RedisRateLimiter(Redis(), prefix=key() + ":", lean=client)
            limits = RequestLimits(limiter, RateLimitPolicy())
            first = await limits.check_request(None, "203.0.113.7")
            assert first.metered
            assert first.remaining == first.limit - 1
            pending = limits.check_request(None, "203.0.113.7")  # written now, on the open one
            assert fake.connections == 1
            decision = await pending
            assert decision.allowed
            assert not decision.metered
            login = await limits.check_login("someone@example.com", "203.0.113.7")
            assert login.allowed
            assert not login.metered
        finally:
            await client.aclose()


async def test_a_dropped_rate_limit_hit_is_counted_and_warns_nothing(
    lean: RespClient, redis: Redis
) -> None:
    prefix = key() + ":"
    limiter = RedisRateLimiter(redis, prefix=prefix, lean=lean)
    limits = RequestLimits(limiter, RateLimitPolicy())
    await limits.check_request(None, "198.51.100.9")  # the lean connection is open now

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hit = limits.check_request(None, "198.51.100.9")  # the count is written here
        assert isinstance(hit, asyncio.Future)  # a future, which may be dropped
        hit.cancel()  # dropped, as the guard does when the authentication fails
        del hit
        dropped = limits.check_request(None, "198.51.100.9")  # dropped without a cancel
        del dropped
        gc.collect()
    for _ in range(100):  # counted all the same: Redis reads it without us
        if await redis.get(prefix + "ip:198.51.100.9") == b"3":
            break
        await asyncio.sleep(0.01)
    assert await redis.get(prefix + "ip:198.51.100.9") == b"3"
    never_awaited = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert not never_awaited, never_awaited
