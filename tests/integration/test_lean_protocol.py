"""LeanHttpToolsProtocol (whalli serve's): uvicorn's httptools protocol with list-backed events
and pipeline, serving as uvicorn's own does: bodies in, big bodies out under flow control,
pipelined requests in order, a client leaving seen by the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from whalli.entrypoints.http.lean_protocol import LeanEvent, LeanHttpToolsProtocol

BIG = 8 * 1024 * 1024


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/echo":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        content = body
    elif path == "/big":
        content = b"x" * BIG
    elif path == "/wait":  # a stream that ends when the client leaves
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"open\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        app.left.set()  # type: ignore[attr-defined]
        return
    else:
        content = path.encode()
    headers = [(b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app.left = asyncio.Event()  # type: ignore[attr-defined]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=LeanHttpToolsProtocol, log_config=None,
        lifespan="off", loop="asyncio",
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def test_bodies_in_and_big_bodies_out(server: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{server}") as client:

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(50):
                yield f"{i},".encode() * 1000
                await asyncio.sleep(0)

        echoed = await client.post("/echo", content=chunks())
        async with client.stream("GET", "/big") as big:
            received = 0
            async for piece in big.aiter_raw():
                received += len(piece)
                await asyncio.sleep(0.001)  # slower than the server: it must pause writing

    assert echoed.content == b"".join(f"{i},".encode() * 1000 for i in range(50))
    assert received == BIG


async def test_pipelined_requests_are_answered_in_order(server: str) -> None:
    host, port = server.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"".join(f"GET /r{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5)))
    await writer.drain()
    answers = b""
    while answers.count(b"HTTP/1.1 200") < 5 or not answers.endswith(b"/r4"):
        answers += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()

    bodies = [part.rsplit(b"\r\n\r\n", 1)[-1] for part in answers.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [f"/r{i}".encode() for i in range(5)]


async def test_a_client_leaving_a_stream_is_seen_by_the_app(server: str) -> None:
    async with (
        httpx.AsyncClient(base_url=f"http://{server}") as client,
        client.stream("GET", "/wait") as stream,
    ):
        assert await anext(stream.aiter_raw()) == b"open\n"
    await asyncio.wait_for(app.left.wait(), 5)  # type: ignore[attr-defined]


async def test_a_lean_event_behaves_as_asyncio_event() -> None:
    """It relies on asyncio.Event using its ``_waiters`` as a list allows (append, remove,
    iterate): a CPython that did more would fail here."""
    for event in (LeanEvent(), asyncio.Event()):
        waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
        leaving = asyncio.create_task(event.wait())
        await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)
        event.set()
        assert await asyncio.gather(*waiters) == [True, True, True]
        assert await asyncio.wait_for(event.wait(), 1) is True
        event.clear()
        late = asyncio.create_task(event.wait())
        await asyncio.sleep(0)
        assert not late.done()
        event.set()
        assert await late is True
        assert len(event._waiters) == 0
    assert isinstance(LeanEvent()._waiters, list)
