"""A lean Redis client for the request path's short commands: one multiplexed connection,
RESP2 parsed in the protocol's own callback.

redis-py checks a connection out of its pool for every command (a lock, a liveness check,
observability hooks), writes, awaits its reader, parses and checks the connection back in. For
the few short commands every chat request sends (the rate limit's script, the prompt cache,
the chat session, the reply relay's writes) that is most of their cost. Measured on a 2-core
machine (docs/benchmarks.md, sixteenth session): a GET awaited in turn took 0.17-0.20 ms
through redis-py, 0.04-0.07 ms on a bare socket and 0.075 ms here; after a 10 ms idle pause
0.55-0.57, 0.19-0.22 and 0.24 ms.

Here every command is written at once on one connection and its future queued; Redis answers
in order, so ``data_received`` resolves the futures first in, first out. There is no pool and no
lock: concurrent requests pipeline on the one connection, which is what Redis, single-threaded,
does with them anyway. Rules:

- **only short, non-blocking commands** go through it (GET, SET, EVALSHA...): a blocking read
  (``XREAD BLOCK``) would hold up every command queued behind it; those stay on redis-py;
- **errors are redis-py's** (``redis.exceptions``: ``ConnectionError``, ``TimeoutError``,
  ``ResponseError``, ``NoScriptError``...), so ``adapters/redis/errors.translated`` maps them
  to the domain's ``ServiceUnavailable`` exactly as for redis-py;
- a command that waits longer than ``command_timeout`` for its answer aborts the connection:
  every command in flight on it fails with ``TimeoutError`` (their answers could no longer be
  told apart), and the next command connects again. One timer per connection checks the oldest
  command, not one timer per command;
- a connection that closes (Redis restarted) fails what was in flight with ``ConnectionError``;
  the next command connects again. A command that found no live connection is sent on a new
  one; one that was sent and lost is not sent again (a rate-limit hit must not count twice);
- a cancelled caller leaves its answer to be read and dropped in its turn;
- ``redis://``, ``rediss://`` (TLS, redis-py's URL options) and ``unix://`` URLs, with the
  password, user name and database they name (``AUTH`` and ``SELECT`` on connecting).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from redis import exceptions as rx
from redis.asyncio.connection import SSLConnection, parse_url

Arg = str | bytes | int | float
Reply = Any  # bytes | int | None | list[Reply], or an exception instance for an error reply

_CRLF = b"\r\n"
# error replies as redis-py raises them (by the reply's first word)
_ERRORS: dict[str, type[rx.RedisError]] = {
    "NOSCRIPT": rx.NoScriptError,
    "LOADING": rx.BusyLoadingError,
    "READONLY": rx.ReadOnlyError,
    "NOAUTH": rx.AuthenticationError,
    "WRONGPASS": rx.AuthenticationError,
    "NOPERM": rx.NoPermissionError,
    "OOM": rx.OutOfMemoryError,
}


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def encode_command(args: tuple[Arg, ...]) -> bytes:
    """``args`` as a RESP array of bulk strings (a command has at least its name: Redis
    never answers an empty one, which would leave every later answer to the wrong caller)."""
    if not args:
        raise ValueError("a Redis command needs at least its name")
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise TypeError("a bool is not a Redis argument")
        elif isinstance(arg, int | float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"{type(arg).__name__} is not a Redis argument")
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(_CRLF)
    return b"".join(parts)


def parse_reply(buf: bytes | bytearray, pos: int) -> tuple[Reply, int]:
    """The RESP2 reply starting at ``pos`` and the position after it; ``_Incomplete`` if the
    buffer ends first. An error reply is returned as an exception instance (not raised)."""
    end = buf.find(_CRLF, pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos], bytes(buf[pos + 1 : end])
    after = end + 2
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, after
        if len(buf) < after + size + 2:
            raise _Incomplete
        return bytes(buf[after : after + size]), after + size + 2
    if kind == 0x3A:  # : integer
        return int(line), after
    if kind == 0x2B:  # + simple string
        return line, after
    if kind == 0x2D:  # - error
        return _error(line.decode(errors="replace")), after
    if kind == 0x2A:  # * array
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse_reply(buf, after)
            items.append(item)
        return items, after
    raise rx.InvalidResponse(f"unexpected reply type {chr(kind)!r}")


def scan_reply(buf: bytes | bytearray, pos: int, owed: list[int]) -> int:
    """Step over the whole elements from ``pos`` without building them, and return where it
    stopped. ``owed`` counts the elements still owed, outermost first (``[1]``: one reply);
    it is updated in place, and empty once the reply ends at the position returned. Stopped
    inside an element, it can resume from the same position and ``owed`` when more bytes
    come: an array arriving in many reads is stepped over once, then parsed once."""
    while owed:
        end = buf.find(_CRLF, pos)
        if end < 0:
            return pos
        kind, header = buf[pos], buf[pos + 1 : end]
        if kind == 0x24:  # $ bulk string
            size = int(header)
            after = end + 2 + (size + 2 if size >= 0 else 0)
            if len(buf) < after:
                return pos
        elif kind in (0x2A, 0x3A, 0x2B, 0x2D):  # * array, : integer, + simple, - error
            after = end + 2
        else:
            raise rx.InvalidResponse(f"unexpected reply type {chr(kind)!r}")
        pos = after
        owed[-1] -= 1
        if kind == 0x2A and int(header) > 0:  # its elements are owed next
            owed.append(int(header))
        while owed and owed[-1] == 0:
            owed.pop()
    return pos


def _error(message: str) -> rx.RedisError:
    return _ERRORS.get(message.partition(" ")[0], rx.ResponseError)(message)


class _Connection(asyncio.Protocol):
    """One connection: commands written in order, their futures resolved in order."""

    __slots__ = (
        "_buf", "_loop", "_owed", "_pending", "_scanned", "_timeout", "_timer", "closed",
        "transport",
    )  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._buf = bytearray()
        # (future, deadline) of each command sent and not yet answered, oldest first
        self._pending: deque[tuple[asyncio.Future[Reply] | None, float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        # an array answer still arriving (at the buffer's start): what it still owes, and how
        # far it was stepped over (``scan_reply``)
        self._owed: list[int] | None = None
        self._scanned = 0
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes, answers: int = 1) -> asyncio.Future[Reply]:
        """Write ``payload`` (``answers`` commands); the future of the last one's answer."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise rx.ConnectionError("Redis connection closed")
        deadline = self._loop.time() + self._timeout
        for _ in range(answers - 1):  # answers before the last are read and dropped
            self._pending.append((None, deadline))
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._pending.append((future, deadline))
        transport.write(payload)
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._check_deadline)
        return future

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, size, pending = 0, len(buf), self._pending
        try:
            while pos < size:
                if buf[pos] == 0x2A:  # an array: stepped over until whole, then parsed once
                    owed = self._owed
                    if owed is None:
                        owed, self._scanned = [1], 0
                    reached = scan_reply(buf, pos + self._scanned, owed)
                    if owed:
                        self._owed, self._scanned = owed, reached - pos
                        raise _Incomplete
                    self._owed = None
                reply, pos = parse_reply(buf, pos)
                if not pending:
                    raise rx.InvalidResponse("an answer to no command")
                future = pending.popleft()[0]
                # no future: an answer nobody awaits; done: a caller cancelled, answer dropped
                if future is not None and not future.done():
                    if isinstance(reply, rx.RedisError):
                        future.set_exception(reply)
                        future.exception()  # a caller that left (send_now) does not warn at GC
                    else:
                        future.set_result(reply)
        except _Incomplete:
            pass
        except (rx.InvalidResponse, ValueError) as e:
            self._fail(rx.ConnectionError(f"Redis sent a malformed answer ({e})"))
            return
        del buf[:pos]

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._pending:
            return
        deadline = self._pending[0][1]
        if self._loop.time() >= deadline:
            self._fail(rx.TimeoutError("Timeout reading from Redis"))
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(rx.ConnectionError("Connection closed by Redis"))

    def _fail(self, error: rx.RedisError) -> None:
        """Close the connection and fail every command in flight on it with ``error``."""
        was_closed, self.closed = self.closed, True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None and not was_closed:
            self.transport.abort()
        pending, self._pending = self._pending, deque()
        for future, _ in pending:
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a caller that left does not warn at GC


def _retrieved(connecting: asyncio.Future[_Connection]) -> None:
    if not connecting.cancelled():
        connecting.exception()  # its callers got it; none left does not warn at GC


class RespClient:
    """Short Redis commands on one lazily opened, multiplexed connection (module docstring)."""

    def __init__(
        self, url: str, *, connect_timeout: float = 2.0, command_timeout: float = 2.0
    ) -> None:
        options: dict[str, Any] = dict(parse_url(url))
        self._host: str = options.get("host", "localhost")
        self._port: int = int(options.get("port", 6379))
        self._path: str | None = options.get("path")
        self._db = int(options.get("db", 0))
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._ssl: ssl.SSLContext | None = None
        if options.get("connection_class") is SSLConnection:
            # redis-py's own TLS settings from the URL's ssl_* options, with its defaults
            # (the certificate and host name verified): no connection is opened here
            tls = {name: value for name, value in options.items() if name.startswith("ssl_")}
            self._ssl = SSLConnection(**tls).ssl_context.get()
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._closes = 0  # aclose calls: a connect that outlives one is dropped

    async def execute(self, *args: Arg) -> Reply:
        """Send one command and return its answer (bytes, int, None or a list of them)."""
        return await (await self._sent(encode_command(args), 1))

    async def _sent(self, payload: bytes, answers: int) -> asyncio.Future[Reply]:
        """``payload`` (``answers`` commands) written on the live connection, opened if need
        be; the future of the last answer."""
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        try:
            return connection.send(payload, answers)
        except rx.ConnectionError:  # it closed since: nothing was sent, so send it anew
            return (await self._connect()).send(payload, answers)

    async def execute_last(self, *commands: tuple[Arg, ...]) -> Reply:
        """Send ``commands`` in one write, in order, and return the last one's answer (the
        others' answers are read and dropped)."""
        payload = b"".join(map(encode_command, commands))
        return await (await self._sent(payload, len(commands)))

    def send_last_now(self, *commands: tuple[Arg, ...]) -> asyncio.Future[Reply] | None:
        """``send_now`` for several commands in one write: the future of the last one's
        answer (the others' are read and dropped), or ``None`` when no connection is open."""
        connection = self._connection
        if connection is None or connection.closed:
            return None
        try:
            return connection.send(b"".join(map(encode_command, commands)), len(commands))
        except rx.ConnectionError:
            return None

    def send_now(self, *args: Arg) -> asyncio.Future[Reply] | None:
        """Write one command now, before returning, and give the future of its answer; or
        ``None`` when no connection is open (then ``execute`` it). A caller can so start a
        command beside other work without a task, whose first step would wait a loop turn."""
        return self.send_last_now(args)

    async def transaction(self, *commands: tuple[Arg, ...]) -> list[Reply]:
        """``commands`` between MULTI and EXEC, written at once on the one connection (nothing
        comes between them) and run atomically; their answers. An error queueing any of them
        fails it as a whole (``EXECABORT``); one failing as it runs (INCR of a text) raises its
        error as redis-py's pipeline does, the others having run."""
        payload = b"".join(
            [encode_command(("MULTI",)), *map(encode_command, commands), encode_command(("EXEC",))]
        )
        result = await (await self._sent(payload, len(commands) + 2))
        if not isinstance(result, list):  # a WATCH-less EXEC answers its list (or an error)
            raise rx.ResponseError("Redis aborted the transaction")
        for answer in result:  # a command that failed as it ran (the others still ran)
            if isinstance(answer, rx.RedisError):
                raise answer
        return result

    async def _connect(self) -> _Connection:
        """The live connection, opened once for every command that waits for it."""
        connection = self._connection
        if connection is not None and not connection.closed:
            return connection
        connecting = self._connecting
        if connecting is None or connecting.done():  # none yet, or one that failed
            connecting = self._connecting = asyncio.ensure_future(self._open())
            connecting.add_done_callback(_retrieved)
        # shielded: a caller that leaves does not cancel the others' connecting
        return await asyncio.shield(connecting)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(loop, self._command_timeout)
        closes = self._closes
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    await loop.create_unix_connection(lambda: connection, self._path)
                else:
                    await loop.create_connection(
                        lambda: connection, self._host, self._port, ssl=self._ssl
                    )
                greeting = []
                if self._password is not None:
                    credentials: tuple[Arg, ...] = (self._password,)
                    if self._username:
                        credentials = (self._username, self._password)
                    greeting.append(connection.send(encode_command(("AUTH", *credentials))))
                if self._db:
                    greeting.append(connection.send(encode_command(("SELECT", self._db))))
                for answer in greeting:
                    await answer
        except TimeoutError as e:
            connection._fail(rx.TimeoutError("Timeout connecting to Redis"))
            raise rx.TimeoutError("Timeout connecting to Redis") from e
        except rx.RedisError:
            connection._fail(rx.ConnectionError("Redis connection set-up failed"))
            raise
        except OSError as e:
            raise rx.ConnectionError(f"Error connecting to Redis ({type(e).__name__})") from e
        if closes != self._closes:  # closed while connecting: nothing goes out on it
            connection._fail(rx.ConnectionError("Redis client closed"))
            raise rx.ConnectionError("Redis client closed")
        self._connection = connection
        return connection

    async def aclose(self) -> None:
        """Close the connection, failing what is in flight on it and a connect under way; a
        later command connects again."""
        self._closes += 1
        connection, self._connection = self._connection, None
        if connection is not None and not connection.closed:
            connection._fail(rx.ConnectionError("Redis client closed"))


async def create_resp_client(
    url: str, *, command_timeout: float = 2.0
) -> AsyncIterator[RespClient]:
    """A ``RespClient`` for ``url`` as a container resource: closed at shutdown."""
    client = RespClient(url, command_timeout=command_timeout)
    try:
        yield client
    finally:
        await client.aclose()
