"""Raw HTTP/1.1 servers on loopback (``asyncio.start_server``) for the outbound client's tests:
each handler writes bytes exactly as a test wants them, framing mistakes included."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx

from whalli.adapters.outbound_http import new_http_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(
    handler: Handler, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
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

    server = await asyncio.start_server(accept, host, 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"{scheme}://{shown}:{port}", connections
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


async def requests(reader: asyncio.StreamReader) -> AsyncIterator[tuple[bytes, bytes]]:
    """Each request (head, body) on a kept-alive connection, until the client hangs up."""
    while True:
        try:
            yield await read_request(reader)
        except asyncio.IncompleteReadError:
            return
