"""Whalli's outbound HTTP client: httpx, over an httpcore network backend straight on asyncio.

httpx sends through httpcore, whose default backend goes through anyio: every read of a
streamed body passes a cancel scope, a timeout scope and an extra event-loop turn (anyio's
checkpoint), and every open connection holds anyio's stream objects. A provider's reply is
read one small SSE chunk at a time, over thousands of held streams, so that cost adds up on
the hot path. This backend keeps what httpcore asks of a network stream (``read``, ``write``,
``aclose``, ``start_tls``, ``get_extra_info``) on a plain ``asyncio.Protocol``:

- ``read`` returns what has arrived (at most ``max_bytes``), or waits for the next data; end of
  stream is ``b""``; a read timeout (httpcore passes one only when the client sets one) raises
  ``httpcore.ReadTimeout``; a connection reset raises ``httpcore.ReadError``;
- ``write`` hands the bytes to the transport and waits only while the transport's buffer is over
  its high-water mark (flow control);
- received data is bounded: past ``_PAUSE_AT`` unread bytes the transport stops reading until
  the reader catches up, so a fast server cannot grow the buffer without end;
- ``start_tls`` upgrades the connection in place (``loop.start_tls``) for HTTPS;
- ``is_readable`` (httpcore's check that an idle pooled connection is still usable) is true when
  the server closed the connection or sent bytes nobody asked for.

Connection errors map to httpcore's exceptions, which httpx maps to its own, as with the default
backend. Measured (``bench/bench_chat.py``, and a loop of streamed replies from the fake
provider): about a third less memory per held streamed request and a fifth less CPU per
streamed reply than the anyio backend.

``new_http_client`` builds the client with it: only the client's default transport changes, so
proxies configured by the environment (``HTTPS_PROXY``...) keep httpx's own transports.
"""

# ruff: noqa: ASYNC109 - the ``timeout`` parameters are httpcore's interface

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Coroutine, Iterable
from typing import Any, cast

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

# httpcore's own type for ``socket.setsockopt`` arguments
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

_PAUSE_AT = 256 * 1024  # unread bytes past which the transport stops reading


class _Protocol(asyncio.Protocol):
    __slots__ = ("_chunks", "_closed", "_drained", "_error", "_size", "_waiter", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []  # a deque's first block alone is larger
        self._size = 0
        self._closed = False  # the peer ended the stream, or the connection is gone
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, but have the same methods
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _PAUSE_AT and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._error = exc
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

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # what the stream asks

    @property
    def readable(self) -> bool:
        return self._closed or self._size > 0

    async def read(self, max_bytes: int) -> bytes:
        while not self._chunks:
            if self._closed:
                if self._error is not None:
                    raise httpcore.ReadError(str(self._error) or type(self._error).__name__)
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        data = self._chunks[0]
        if len(data) > max_bytes:
            self._chunks[0] = data[max_bytes:]
            data = data[:max_bytes]
        else:
            del self._chunks[0]
        self._size -= len(data)
        if self._size <= _PAUSE_AT // 2 and self.transport is not None:
            self.transport.resume_reading()  # a no-op unless reading was paused
        return data

    @property
    def writing_paused(self) -> bool:
        return self._drained is not None

    async def drained(self) -> None:
        if self._drained is not None:
            await self._drained


class AsyncioStream(AsyncNetworkStream):
    """One connection (see the module docstring)."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol

    def read(self, max_bytes: int, timeout: float | None = None) -> Coroutine[Any, Any, bytes]:
        # httpcore awaits it at once. Without a timeout (the streamed provider replies, bounded
        # by their caller) that is the protocol's read itself: one coroutine less per read
        # waiting for data, held as long as the reply waits for its next token.
        if timeout is None:
            return self._protocol.read(max_bytes)
        return self._read_within(max_bytes, timeout)

    async def _read_within(self, max_bytes: int, timeout: float) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._protocol.read(max_bytes)
        except TimeoutError as e:
            raise httpcore.ReadTimeout(f"no data within {timeout:g}s") from e

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if not self._protocol.writing_paused:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._protocol.drained()
        except TimeoutError as e:
            raise httpcore.WriteTimeout(f"could not send within {timeout:g}s") from e

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                upgraded = await loop.start_tls(
                    self._transport, self._protocol, ssl_context,
                    server_hostname=server_hostname,
                )  # fmt: skip
        except TimeoutError as e:
            self._transport.close()
            raise httpcore.ConnectTimeout(f"no TLS handshake within {timeout:g}s") from e
        except (OSError, ssl.SSLError) as e:
            self._transport.close()
            raise httpcore.ConnectError(str(e)) from e
        if upgraded is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._protocol.transport = upgraded
        return AsyncioStream(upgraded, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            return self._protocol.readable
        return None


class AsyncioBackend(AsyncNetworkBackend):
    """Opens :class:`AsyncioStream` connections (see the module docstring)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        local = None if local_address is None else (local_address, 0)
        connecting = asyncio.get_running_loop().create_connection(
            _Protocol, host, port, local_addr=local
        )
        return await _connected(connecting, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> AsyncNetworkStream:
        connecting = asyncio.get_running_loop().create_unix_connection(_Protocol, path)
        return await _connected(connecting, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connected(
    connecting: Coroutine[Any, Any, tuple[asyncio.Transport, _Protocol]],
    timeout: float | None,
    options: Iterable[SocketOption] | None,
) -> AsyncioStream:
    """The stream once ``connecting`` has connected, its failures as httpcore's exceptions."""
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await connecting
    except TimeoutError as e:
        raise httpcore.ConnectTimeout(f"could not connect within {timeout:g}s") from e
    except OSError as e:
        raise httpcore.ConnectError(str(e) or type(e).__name__) from e
    # asked only when there is an option to set: uvloop makes the socket object at the first
    # ask, then keeps it as long as the connection
    options = list(options or ())
    sock: socket.socket | None = transport.get_extra_info("socket") if options else None
    if sock is not None:
        for option in options:
            sock.setsockopt(*option)
    return AsyncioStream(transport, protocol)


def new_http_client(
    *,
    timeout: float | httpx.Timeout | None,
    max_connections: int,
    max_keepalive_connections: int,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` (redirects not followed) whose default transport connects with
    :class:`AsyncioBackend`, with the same TLS settings and pool limits it would have had."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_keepalive_connections
    )
    client = httpx.AsyncClient(
        timeout=timeout, limits=limits, follow_redirects=False, verify=verify
    )
    # httpx takes no network backend, so the pool its default transport made is replaced by an
    # identical one on this backend (tests/integration/test_outbound_http.py checks it is).
    transport = client._transport
    pool = getattr(transport, "_pool", None)
    if (
        isinstance(transport, httpx.AsyncHTTPTransport)
        and type(pool) is httpcore.AsyncConnectionPool
    ):
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=pool._ssl_context,
            max_connections=pool._max_connections,
            max_keepalive_connections=pool._max_keepalive_connections,
            keepalive_expiry=pool._keepalive_expiry,
            http1=pool._http1,
            http2=pool._http2,
            retries=pool._retries,
            local_address=pool._local_address,
            uds=pool._uds,
            socket_options=pool._socket_options,
            network_backend=AsyncioBackend(),
        )
    return client
