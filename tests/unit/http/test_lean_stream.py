"""``LeanStream``'s body: sent in the request's task, ended by the client's disconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from whalli.entrypoints.http.lean_stream import LastChunk, LeanStreamingResponse


class Client:
    """An ASGI client: what was sent to it, and a disconnect it can make."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.receiving = 0

    async def send(self, message: Any) -> None:
        self.sent.append(message)

    async def receive(self) -> Any:
        self.receiving += 1
        await self.gone.wait()
        return {"type": "http.disconnect"}

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent]


def _response(body: AsyncIterator[bytes]) -> LeanStreamingResponse:
    return LeanStreamingResponse(iterator=body, media_type="text/event-stream")


async def test_a_body_sent_to_its_end_ends_the_response_and_stops_listening() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    client = Client()
    before = asyncio.all_tasks()  # (the loop may run other tests' tasks)
    await _response(body()).send_body(client.send, client.receive)

    assert client.bodies == [b"a", b"b", b""]
    assert client.sent[-1]["more_body"] is False
    await asyncio.sleep(0)
    listeners = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert listeners == []  # the disconnect listener was cancelled


async def test_a_last_chunk_goes_with_the_end_of_the_body_and_closes_the_iterator() -> None:
    closed: list[str] = []

    async def inner() -> AsyncIterator[bytes]:
        try:
            yield LastChunk(b"c")
            yield b"never"
        finally:
            closed.append("inner")

    async def body() -> AsyncIterator[bytes]:
        chunks = inner()
        try:
            yield b"a"
            async for chunk in chunks:
                yield chunk
        finally:
            closed.append("body")
            await chunks.aclose()  # type: ignore[attr-defined]

    client = Client()
    await _response(body()).send_body(client.send, client.receive)

    # one message (one write) for the last chunk and the end, nothing after it
    assert client.bodies == [b"a", b"c"]
    assert [m["more_body"] for m in client.sent] == [True, False]
    assert type(client.sent[-1]["body"]) is bytes  # a plain bytes to the server
    assert closed == ["body", "inner"]  # closed at once, not when collected


async def test_a_client_that_leaves_ends_the_stream_quietly_and_its_finally_runs() -> None:
    cleaned = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await asyncio.Event().wait()  # an idle reply: nothing more comes
            yield b"never"
        finally:
            cleaned.set()

    client = Client()
    sending = asyncio.create_task(_response(body()).send_body(client.send, client.receive))
    while not client.sent:
        await asyncio.sleep(0)
    client.gone.set()

    await asyncio.wait_for(sending, 5)  # returns: no CancelledError, no error

    assert cleaned.is_set()
    assert client.bodies == [b"a"]
    assert not sending.cancelled()
    assert sending.cancelling() == 0


async def test_a_cancellation_from_elsewhere_is_not_taken_for_a_disconnect() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        await asyncio.Event().wait()

    client = Client()
    sending = asyncio.create_task(_response(body()).send_body(client.send, client.receive))
    while not client.sent:
        await asyncio.sleep(0)
    sending.cancel()  # a server shutting down, say

    with pytest.raises(asyncio.CancelledError):
        await sending


async def test_a_disconnect_noticed_after_the_end_cancels_nothing() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a"

    client = Client()
    response = _response(body())

    async def respond_then_go_on() -> str:
        await response.send_body(client.send, client.receive)
        client.gone.set()  # the client leaves as the response ends
        for _ in range(5):
            await asyncio.sleep(0)  # the middleware's work after the body, say
        return "finished"

    assert await asyncio.wait_for(respond_then_go_on(), 5) == "finished"
