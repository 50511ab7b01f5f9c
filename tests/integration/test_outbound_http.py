"""Whalli's outbound HTTP client (httpx on ``AsyncioBackend``) against raw servers on loopback.

The providers' and OAuth's own tests run through this client too; these pin down what the
network backend must do for any server: stream as bytes arrive, hold back a fast sender, carry
large bodies both ways, reuse and replace pooled connections, speak TLS, and fail as httpx does.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trustme
import uvloop

from whalli.adapters.outbound_http import AsyncioBackend, new_http_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw server on loopback: (its base URL, a list that grows by one per connection)."""
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(request head, body) of one request with a Content-Length (or none)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def response(body: bytes, *, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def client(**options: object) -> httpx.AsyncClient:
    settings: dict[str, object] = {
        "timeout": 5.0, "max_connections": 10, "max_keepalive_connections": 10,
    }  # fmt: skip
    settings.update(options)
    return new_http_client(**settings)  # type: ignore[arg-type]


async def test_the_client_connects_through_the_asyncio_backend() -> None:
    async with client() as http:
        pool = http._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool._network_backend, AsyncioBackend)


async def test_a_streamed_body_arrives_piece_by_piece() -> None:
    first_read = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await first_read.wait()  # the second piece only once the client has the first
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()

    pieces = []
    async with (
        serving(handler) as (url, _),
        client() as http,
        asyncio.timeout(10),
        http.stream("GET", url) as r,
    ):
        async for piece in r.aiter_bytes():  # waits forever if the piece is held back
            pieces.append(piece)
            first_read.set()
    assert b"".join(pieces) == b"firstsecond"
    assert pieces[0] == b"first"


async def test_large_bodies_both_ways_survive_flow_control() -> None:
    upload = bytes(range(256)) * (16 * 1024)  # 4 MiB: more than the socket buffers hold
    download = hashlib.sha256(upload).digest() * (128 * 1024)  # 4 MiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        assert body == upload
        writer.write(response(download))
        await writer.drain()

    async with serving(handler) as (url, _), client() as http:
        received = bytearray()
        async with http.stream("POST", url, content=upload) as r:
            async for piece in r.aiter_bytes():
                received += piece
                await asyncio.sleep(0)  # a slow reader: the server must be held back
    assert bytes(received) == download


async def test_keep_alive_reuses_a_connection_and_replaces_one_the_server_closed() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head, _ = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            close = b"/close" in head.split(b"\r\n")[0]
            writer.write(response(b"ok"))
            await writer.drain()
            if close:  # answered with keep-alive, then closed while idle
                return

    async with serving(handler) as (url, connections), client() as http:
        assert (await http.get(f"{url}/a")).text == "ok"
        assert (await http.get(f"{url}/close")).text == "ok"
        assert len(connections) == 1
        await asyncio.sleep(0.05)  # the server's close reaches the pooled connection
        assert (await http.get(f"{url}/b")).text == "ok"
        assert len(connections) == 2


async def test_a_connection_cut_mid_body_is_a_transport_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async with serving(handler) as (url, _), client() as http:
        with pytest.raises(httpx.TransportError):
            await http.get(url)


async def test_closing_a_stream_early_closes_its_connection() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nmore\r\n")
        await writer.drain()
        await reader.read()  # returns at end of stream: the client hung up
        closed.set()

    async with serving(handler) as (url, _), client() as http:
        async with http.stream("GET", url) as r:
            async for _ in r.aiter_bytes():
                break
        await asyncio.wait_for(closed.wait(), timeout=5)


async def test_a_refused_connection_is_a_connect_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return None

    async with serving(handler) as (url, _):
        pass  # the port is free again once the server closed
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url)


async def test_a_read_timeout_raises_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # never answers

    async with serving(handler) as (url, _), client(timeout=httpx.Timeout(5, read=0.2)) as http:
        async with asyncio.timeout(10):  # fails rather than hangs if the read timeout is lost
            with pytest.raises(httpx.ReadTimeout):
                await http.get(url)


async def test_tls_with_a_trusted_certificate_and_refused_with_an_unknown_one() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(b"secret"))
        await writer.drain()

    async with serving(handler, tls=server_tls) as (url, _):
        async with client(verify=trusted) as http:
            assert (await http.get(url)).text == "secret"
        async with client() as http:  # the system's CAs do not know this one
            with pytest.raises(httpx.ConnectError):
                await http.get(url)


async def test_socket_options_are_set_on_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    keepalive = (socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    async with serving(handler) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        for options, expected in (([(*keepalive, 1)], 1), (None, 0)):
            stream = await AsyncioBackend().connect_tcp(
                "127.0.0.1", port, timeout=5, socket_options=options
            )
            try:
                sock = stream.get_extra_info("socket")
                assert sock.getsockopt(*keepalive) == expected
            finally:
                await stream.aclose()


def test_every_case_also_on_uvloop() -> None:
    """The servers run uvloop, whose transports are not asyncio's classes: the same cases there."""
    cases = [
        test_the_client_connects_through_the_asyncio_backend,
        test_a_streamed_body_arrives_piece_by_piece,
        test_large_bodies_both_ways_survive_flow_control,
        test_keep_alive_reuses_a_connection_and_replaces_one_the_server_closed,
        test_a_connection_cut_mid_body_is_a_transport_error,
        test_closing_a_stream_early_closes_its_connection,
        test_a_refused_connection_is_a_connect_error,
        test_a_read_timeout_raises_read_timeout,
        test_tls_with_a_trusted_certificate_and_refused_with_an_unknown_one,
        test_socket_options_are_set_on_the_connection,
    ]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        for case in cases:
            runner.run(case())
