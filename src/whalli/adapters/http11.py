"""A lean HTTP/1.1 transport for httpx: one ``asyncio.Protocol`` per connection, parsed by
httptools (llhttp, the parser uvicorn already serves with).

httpx's default transport is httpcore, whose HTTP/1.1 connections run h11's pure-Python state
machine and a pool guarded by locks and events on every request and every body read. A
provider's reply arrives as dozens of small SSE chunks, over up to thousands of held streams,
so that cost is paid on the chat's hot path (``bench/bench_chat.py`` measures it). This
transport keeps httpx's client, its ``Request``/``Response`` and everything above them (headers,
redirect policy, decoding, errors) and replaces only what sends a request and reads its answer:

- connections are pooled per (scheme, host, port) for keep-alive; an idle connection the server
  closed, or sent unasked-for bytes on, or idle past ``keepalive_expiry``, is never reused; at
  most ``max_connections`` are open at once (a request waits for a slot up to the pool
  timeout, then ``httpx.PoolTimeout``), at most ``max_keepalive_connections`` kept idle;
- the body is read as it arrives, chunk by chunk as the server framed it (Content-Length,
  chunked, or until the connection closes); past ``_PAUSE_AT`` unread bytes the connection stops
  reading until the reader catches up, so a fast server cannot grow the buffer without end;
- a connection goes back to the pool only when its response was read whole and both sides keep
  it alive; a response closed early (a reply the caller stopped) closes its connection at once,
  which is how an upstream generation is cancelled;
- timeouts are httpx's (``connect``, ``read`` per wait for bytes, ``write`` per wait to send,
  ``pool``), and failures are httpx's exceptions: ``ConnectError``/``ConnectTimeout``,
  ``ReadError``/``ReadTimeout``, ``WriteError``/``WriteTimeout``, and ``RemoteProtocolError``
  for a malformed answer or one cut before its end;
- HTTPS through ``loop.create_connection(ssl=...)`` with httpx's SSL context; HTTP/2 and
  upgrades are not spoken (an upgrade answer is a ``RemoteProtocolError``).
"""

# ruff: noqa: ASYNC109 - timeouts are httpx's, per wait, passed down from each request

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httptools
import httpx

_PAUSE_AT = 256 * 1024  # unread body bytes past which the connection stops reading

Key = tuple[str, str, int]


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; the parser's callbacks fill the current response."""

    __slots__ = (
        "_ambiguous", "_chunks", "_drained", "_eof_ends", "_error", "_expect_body", "_keep_alive",
        "_size", "_waiter", "closed", "complete", "head_done", "headers", "idle_since", "in_use",
        "key", "parser", "reason", "status", "transport",
    )  # fmt: skip

    def __init__(self, key: Key) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # What h11 (httpx's default) also reads: bare LF line ends, spaces after a chunk size,
        # and Content-Length beside chunked (chunked wins, RFC 9112 6.3; the connection is
        # then not reused). Folded or duplicate headers stay refused.
        self.parser.set_dangerous_leniencies(
            lenient_chunked_length=True,
            lenient_optional_cr_before_lf=True,
            lenient_spaces_after_chunk_size=True,
        )
        self.in_use = True
        self.idle_since = 0.0
        self.closed = False  # the peer ended the stream, or the connection is gone
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self._keep_alive = False  # the parser's verdict once the answer is complete
        self._ambiguous = False  # both Content-Length and Transfer-Encoding
        self._expect_body = True  # False for HEAD: the answer's head is all there is
        self._eof_ends = False  # no Content-Length nor chunked: the body ends with the stream
        self._chunks: list[bytes] = []
        self._size = 0

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, but have the same methods
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.in_use or self.complete:  # bytes nobody asked for: not reusable
            self._fail(httpx.RemoteProtocolError("The server sent data on an idle connection."))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("The server switched protocols."))
        except httptools.HttpParserError as e:
            self._fail(httpx.RemoteProtocolError(f"Malformed HTTP answer ({e})."))
        if self._size > _PAUSE_AT and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        if self._eof_ends and self.head_done:
            self.complete = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None and self._error is None:
            self._error = httpx.ReadError(str(exc) or type(exc).__name__)
        elif self._eof_ends and self.head_done and self._error is None:
            self.complete = True  # the server ended the body (not our own close)
        self._wake()
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers, self.reason = [], b""
            return
        self.status = status
        self.head_done = True
        names = {name.lower() for name, _ in self.headers}
        framed = b"content-length" in names or b"transfer-encoding" in names
        self._eof_ends = not framed and status not in (204, 304)
        self._ambiguous = b"content-length" in names and b"transfer-encoding" in names
        if not self._expect_body:
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if self._expect_body:
            self._chunks.append(body)
            self._size += len(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            # only known until the next answer; never after an ambiguous framing
            self._keep_alive = self.parser.should_keep_alive() and not self._ambiguous

    # what the transport asks

    def _fail(self, error: BaseException | None) -> None:
        """Close the connection; ``error`` (the first one kept) is what a waiting reader gets."""
        if self._error is None:
            self._error = error
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def start(self, *, expect_body: bool) -> None:
        self.in_use = True
        self._reset()
        self._expect_body = expect_body

    @property
    def reusable(self) -> bool:
        return not self.closed and self._error is None and not self.transport_closing

    def peer_stirred(self) -> bool:
        """Whether the server wrote to (or closed) this idle connection since the loop last
        read it: its end (FIN) may be waiting unread, as the task that read the last answer
        can run before the loop reads the socket again."""
        sock = None if self.transport is None else self.transport.get_extra_info("socket")
        if sock is None:
            return False
        poller = select.poll()  # not select.select: descriptors above 1024 are common here
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    @property
    def transport_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    @property
    def keeps_alive(self) -> bool:
        """The answer was read whole and both sides keep the connection."""
        return (
            self.complete
            and not self._chunks
            and self.reusable
            and not self._eof_ends
            and self._expect_body
            and self._keep_alive
        )

    async def _wait(self, timeout: float | None) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        if timeout is None:
            await self._waiter
            return
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError as e:
            raise httpx.ReadTimeout(f"No data within {timeout:g}s.") from e

    async def head(self, timeout: float | None) -> None:
        while not self.head_done:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            await self._wait(timeout)

    async def body(self, timeout: float | None) -> bytes:
        """The next piece of the body, ``b""`` at its end."""
        while not self._chunks:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            if self.closed:
                raise httpx.RemoteProtocolError(
                    "The server closed the connection before the end of the body."
                )
            await self._wait(timeout)
        if len(self._chunks) == 1:
            data = self._chunks[0]
            self._chunks = []
        else:
            data = b"".join(self._chunks)
            self._chunks.clear()
        self._size = 0
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()  # a no-op unless reading was paused
        return data

    async def send(self, data: bytes, timeout: float | None) -> None:
        if self.transport_closing or self._error is not None:
            raise httpx.WriteError("The connection is closed.")
        assert self.transport is not None
        self.transport.write(data)
        drained = self._drained
        if drained is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await drained
        except TimeoutError as e:
            raise httpx.WriteTimeout(f"Could not send within {timeout:g}s.") from e
        if self.closed:
            raise httpx.WriteError("The connection closed while sending.")

    def close(self) -> None:
        """Close it ourselves: a reader still waiting for the body gets a ``ReadError``."""
        ended = "The connection was closed before the end of the body."
        self._fail(None if self.complete else httpx.ReadError(ended))


class _Body(httpx.AsyncByteStream):
    __slots__ = ("_connection", "_done", "_read_timeout", "_transport")

    def __init__(
        self, transport: Http11Transport, connection: _Connection, read_timeout: float | None
    ) -> None:
        self._transport, self._connection = transport, connection
        self._read_timeout = read_timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._done:
            return
        try:
            while data := await self._connection.body(self._read_timeout):
                yield data
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._transport._release(self._connection)


class Http11Transport(httpx.AsyncBaseTransport):
    """See the module docstring."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._ssl = ssl_context
        self._max = max_connections
        self._max_idle = max_keepalive_connections
        self._expiry = keepalive_expiry
        self._idle: dict[Key, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._freed: asyncio.Event | None = None
        self._reserved = 0  # connections being opened, counted against the limit
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"Unsupported URL scheme {scheme!r}.")
        key: Key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        for name, value in request.headers.raw:
            _check_header(name, value)  # before a connection is taken for it
        connection = await self._acquire(key, timeouts)
        try:
            connection.start(expect_body=request.method != "HEAD")
            try:
                await self._send(connection, request, timeouts.get("write"))
            except httpx.WriteError:
                if not connection.head_done:  # no early answer (a 413 before the whole body)
                    raise
            await connection.head(timeouts.get("read"))
        except BaseException:
            self._discard(connection)
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=_Body(self, connection, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": connection.reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()

    # the pool

    async def _acquire(self, key: Key, timeouts: dict[str, float | None]) -> _Connection:
        """An idle connection to ``key``, else a new one once fewer than ``max_connections``
        are open (idle ones to other hosts give way), waiting up to the pool timeout."""
        pool_timeout = timeouts.get("pool")
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        while True:
            if self._closed:
                raise RuntimeError("The transport is closed.")
            connection = self._pooled(key)
            if connection is not None:
                return connection
            if len(self._open) + self._reserved < self._max or self._close_an_idle_one():
                return await self._connect(key, timeouts.get("connect"))
            if self._freed is None:
                self._freed = asyncio.Event()
            freed = self._freed
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise httpx.PoolTimeout("No connection became free in time.")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await freed.wait()

    def _pooled(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest still open
            if (
                connection.reusable
                and now - connection.idle_since < self._expiry
                and not connection.peer_stirred()
            ):
                connection.in_use = True
                return connection
            self._discard(connection)
        return None

    async def _connect(self, key: Key, connect_timeout: float | None) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if scheme == "https":
            tls = {"ssl": self._ssl, "server_hostname": host}
        connection: _Connection | None = None

        def protocol() -> _Connection:
            nonlocal connection
            connection = _Connection(key)
            return connection

        self._reserved += 1
        try:
            async with asyncio.timeout(connect_timeout):
                await loop.create_connection(protocol, host, port, **tls)
        except TimeoutError as e:
            if connection is not None:
                connection.close()
            raise httpx.ConnectTimeout(f"Could not connect within {connect_timeout:g}s.") from e
        except (OSError, ssl.SSLError) as e:
            raise httpx.ConnectError(str(e) or type(e).__name__) from e
        finally:
            self._reserved -= 1
            self._notify()
        assert connection is not None
        self._open.add(connection)
        return connection

    def _notify(self) -> None:
        """Wake the requests waiting for a connection to take, or room to open one."""
        freed, self._freed = self._freed, None
        if freed is not None:
            freed.set()

    def _close_an_idle_one(self) -> bool:
        for key, idle in self._idle.items():
            if idle:
                self._discard(idle.pop(0))
                if not idle:
                    del self._idle[key]
                return True
        return False

    def _release(self, connection: _Connection) -> None:
        """A response is done with its connection: keep it idle, or close it."""
        if self._closed or not connection.keeps_alive:
            self._discard(connection)
            return
        connection.in_use = False
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.key, []).append(connection)
        if sum(map(len, self._idle.values())) > self._max_idle:
            self._close_an_idle_one()
        self._notify()

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        if connection in self._open:
            self._open.discard(connection)
            self._notify()

    async def _send(
        self, connection: _Connection, request: httpx.Request, timeout: float | None
    ) -> None:
        url = request.url
        head = [request.method.encode("ascii"), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
        stream = request.stream
        if isinstance(stream, httpx.ByteStream):  # the whole body at hand: one write
            body = b"".join([piece async for piece in stream])
            if chunked:
                body = _chunk(body) + b"0\r\n\r\n"
            await connection.send(b"".join(head) + body, timeout)
            return
        await connection.send(b"".join(head), timeout)
        async for piece in stream:  # type: ignore[union-attr]
            if piece:  # each piece as it comes: a producer may wait for the server
                await connection.send(_chunk(piece) if chunked else piece, timeout)
        if chunked:
            await connection.send(b"0\r\n\r\n", timeout)


# RFC 9110 5.1, 5.5: a token for the name; no CR, LF or NUL in the value, nor surrounding blanks
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\r\n\x00]|^[ \t]|[ \t]$")


def _check_header(name: bytes, value: bytes) -> None:
    """Refuse a header that would change the request's framing (a value with a line break: a
    key read with its newline, or anything user-influenced), as httpx's own transport does."""
    if not _HEADER_NAME.fullmatch(name) or _BAD_VALUE.search(value):
        raise httpx.LocalProtocolError(f"Illegal header {name[:64]!r}: not sent")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
