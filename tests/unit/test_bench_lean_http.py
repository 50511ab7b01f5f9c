"""The benchmark's lean HTTP client reads responses as HTTP/1.1 frames them, and reuses a
keep-alive connection only after a response was read to its end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from bench._lean_http import LeanClient


class _Server:
    """A loopback server answering each request with the next canned response, in turn."""

    def __init__(self, responses: list[bytes]) -> None:
        self.responses, self.requests, self.connections = responses, list[bytes](), 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.responses:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                response = self.responses.pop(0)
                writer.write(response)
                await writer.drain()
                if b"Connection: close" in response:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[_Server, LeanClient]]:
    """The server (its responses to be given by the test) and a client of it."""
    state = _Server([])
    listening = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    client = LeanClient(f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}")
    try:
        yield state, client
    finally:
        await client.aclose()
        listening.close()


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
)
LENGTH = b'HTTP/1.1 201 Created\r\nContent-Length: 11\r\n\r\n{"id": "x"}'


async def test_chunked_pieces_come_one_by_one_and_the_connection_is_reused(
    server: tuple[_Server, LeanClient],
) -> None:
    state, client = server
    state.responses += [CHUNKED, LENGTH]
    async with client.stream("GET", "/a") as response:
        pieces = [piece async for piece in response.aiter_raw()]
    assert response.status_code == 200
    assert pieces == [b"hello", b" world"]
    status, body = await client.request("POST", "/b", json_body={"k": "v"}, headers={"X-A": "1"})
    assert (status, body) == (201, b'{"id": "x"}')
    assert state.connections == 1
    assert state.requests[1].startswith(b"POST /b HTTP/1.1\r\n")
    assert b"X-A: 1\r\n" in state.requests[1]
    assert state.requests[1].endswith(b'\r\n\r\n{"k": "v"}')


async def test_a_response_left_before_its_end_closes_its_connection(
    server: tuple[_Server, LeanClient],
) -> None:
    state, client = server
    state.responses += [CHUNKED, LENGTH]
    async with client.stream("GET", "/a") as response:
        async for _ in response.aiter_raw():
            break
    assert await client.request("GET", "/b") == (201, b'{"id": "x"}')
    assert state.connections == 2  # the half-read one was not reused


async def test_a_body_to_the_end_of_the_connection(server: tuple[_Server, LeanClient]) -> None:
    state, client = server
    state.responses += [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", LENGTH]
    assert await client.request("GET", "/a") == (200, b"all of it")
    assert await client.request("GET", "/b") == (201, b'{"id": "x"}')
    assert state.connections == 2
