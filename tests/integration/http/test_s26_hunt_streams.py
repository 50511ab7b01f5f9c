"""Hunt S26 of a stream's last chunk (``LastChunk``: the final piece sent with the end of the
body) through a real uvicorn, and of provider requests sent straight to Whalli's transport
(``outbound_http.streamed``) against raw servers and the fake providers on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.fake_providers import FakeProviderServer, Reply, openai_stream
from tests.support.live_server import live_server
from tests.support.raw_http import client, read_request, requests, response, serving
from whalli.adapters.ai import StreamPolicy
from whalli.adapters.ai._http import sse_post
from whalli.adapters.outbound_http import streamed
from whalli.domain.model.errors import ProviderError
from whalli.entrypoints.http.lean_stream import LastChunk, send_chunks, send_until_gone

POLICY = StreamPolicy(max_attempts=1, connect_timeout=5.0)
TIMEOUT = httpx.Timeout(5.0, read=None)  # as sse_post asks: reads bounded by the caller


# --- a stream's last chunk ----------------------------------------------------------------------
class StreamApp:
    """An ASGI app sending one streamed body with ``send_chunks`` as the SSE routes do, from a
    generator whose ``finally`` awaits its bookkeeping (a Redis round trip, say); it notes what
    its cleanup did and the request task's state once the body was sent."""

    def __init__(self) -> None:
        self.cleaned: list[str] = []
        self.cancelling: int | None = None
        self.returned = asyncio.Event()

    async def frames(self) -> AsyncIterator[bytes]:
        try:
            yield b"data: a\n\n"
            yield LastChunk(b"data: end\n\n")
            yield b"never"
        finally:
            self.cleaned.append("started")
            await asyncio.sleep(0.01)  # an awaited round trip: other tasks run meanwhile
            self.cleaned.append("finished")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            await send_until_gone(send_chunks(self.frames(), send), receive)
            task = asyncio.current_task()
            assert task is not None
            self.cancelling = task.cancelling()
        finally:
            self.returned.set()


async def test_a_streams_cleanup_after_its_last_chunk_is_not_cut_by_the_end_of_its_body() -> None:
    """Once the body has ended, uvicorn answers ``receive()`` with ``http.disconnect`` at once,
    which ``send_until_gone`` takes for the client leaving: the generator's ``finally`` (its
    gauge, the reader's bookkeeping, the reply's close) must not be cancelled by it."""
    app = StreamApp()
    async with live_server(app) as http:
        answer = await http.get("/")
        await asyncio.wait_for(app.returned.wait(), 10)
    assert answer.text == "data: a\n\ndata: end\n\n"
    assert app.cleaned == ["started", "finished"]  # run whole, within the request
    assert app.cancelling == 0  # and no cancellation left pending on the request's task


# --- provider requests sent straight to the transport -------------------------------------------
def _basic(userinfo: str) -> str:
    return "Basic " + base64.b64encode(userinfo.encode()).decode()


async def test_a_provider_base_url_with_credentials_sends_them_as_httpx_does() -> None:
    """A self-hosted OpenAI-compatible server behind basic auth, its credentials in
    ``WHALLI_OPENAI_COMPATIBLE_BASE_URL`` (no API key): httpx sends a URL's userinfo as
    ``Authorization: Basic``; the straight way must too, or every reply is a 401."""

    def behind_basic_auth(request: Any) -> Reply:
        if request.headers.get("authorization") != _basic("whalli:s3cr:t"):
            return Reply(status=401, body={"error": {"message": "Unauthorized"}})
        return Reply(chunks=openai_stream(["Hi"]))

    async with FakeProviderServer(behind_basic_auth) as provider, client() as http:
        url = provider.url.replace("http://", "http://whalli:s3cr%3At@") + "/v1/chat/completions"
        events = sse_post(
            http, url, provider="openai_compatible", headers={}, body=b"{}", policy=POLICY
        )
        datas = [event.data async for event in events]
    assert any('"Hi"' in data for data in datas), datas
    assert [r.headers["authorization"] for r in provider.requests] == [_basic("whalli:s3cr:t")]
    assert [r.path for r in provider.requests] == ["/v1/chat/completions"]


async def _through_client_stream(http: httpx.AsyncClient, url: str) -> None:
    async with http.stream("POST", url, content=b"{}", timeout=TIMEOUT):
        pass


async def _straight(http: httpx.AsyncClient, url: str) -> None:
    async with streamed(http, "POST", url, content=b"{}", headers={}, timeout=TIMEOUT):
        pass


async def test_a_failure_before_the_answer_names_its_request_as_through_client_stream() -> None:
    """httpx's client sets ``request`` on the ``RequestError`` its transport raises (reading
    ``error.request`` of an unset one is a ``RuntimeError``): the straight way must as well."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # then closes without an answer

    async with serving(hang_up) as (url, _), client() as http:
        for send in (_through_client_stream, _straight):
            with pytest.raises(httpx.RemoteProtocolError, match="without sending") as cut:
                await send(http, f"{url}/v1/x")
            assert cut.value.request.url == f"{url}/v1/x", send
    async with client() as http:  # the port is free again: nobody listens there
        with pytest.raises(httpx.ConnectError, match=r"\S") as refused:
            await _straight(http, url)
        assert refused.value.request.method == "POST"


async def test_a_provider_request_goes_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``HTTP_PROXY`` (httpx's proxy mounts, read when the client is made) still carries
    provider requests, and ``NO_PROXY`` still exempts a host from it."""
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for head, _ in requests(reader):
            seen.append(head.split(b"\r\n")[0])
            body = b"".join(openai_stream(["Hi"]))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()

    async def events(http: httpx.AsyncClient, url: str) -> list[str]:
        answer = sse_post(http, url, provider="openai", headers={}, body=b"{}", policy=POLICY)
        return [event.data async for event in answer]

    async with serving(proxy) as (proxy_url, _), serving(proxy) as (direct_url, _):
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "localhost")
        async with client() as http:
            proxied = await events(http, "http://provider.test/v1/chat/completions")
            direct = await events(http, direct_url.replace("127.0.0.1", "localhost") + "/v1/d")
    assert seen == [
        b"POST http://provider.test/v1/chat/completions HTTP/1.1",  # a proxy's absolute form
        b"POST /v1/d HTTP/1.1",  # NO_PROXY: straight to the server
    ]
    assert proxied == direct
    assert proxied[-1] == "[DONE]"


@pytest.mark.parametrize(
    "given",
    [
        {"authorization": "Bearer k", "x-api-key": "k"},  # as the adapters send
        {"Authorization": "Bearer k", "X-Api-Key": "k", "Accept": "text/event-stream"},
    ],
)
async def test_the_request_has_one_of_each_header_the_callers_winning_in_any_case(
    given: dict[str, str],
) -> None:
    """sse_post's names replace the client's defaults (``Accept``, ``Accept-Encoding``), and
    an adapter's replace sse_post's whatever their case; the request carries its own Host
    and Content-Length."""
    heads: list[list[bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for head, body in requests(reader):
            heads.append([*head.split(b"\r\n")[:-2], b"|" + body])
            writer.write(response(b"data: [DONE]\n\n"))
            await writer.drain()

    async with serving(handler) as (url, _), client() as http:
        async for _ in sse_post(
            http, f"{url}/v1/messages?beta=true", provider="anthropic", headers=given,
            body=b'{"a": 1}', policy=POLICY,
        ):  # fmt: skip
            pass
    (head,) = heads
    names = [line.split(b":")[0].lower() for line in head[1:-1]]
    assert sorted(names) == sorted(set(names)), names  # no header twice
    lines = {line.split(b": ")[0].lower(): line.split(b": ", 1)[1] for line in head[1:-1]}
    assert head[0] == b"POST /v1/messages?beta=true HTTP/1.1"
    assert lines[b"host"] == url.removeprefix("http://").encode()
    assert lines[b"accept"] == b"text/event-stream"  # over httpx's "Accept: */*"
    assert lines[b"accept-encoding"] == b"identity"  # over httpx's "gzip, deflate"
    assert lines[b"authorization"] == b"Bearer k"
    assert lines[b"content-type"] == b"application/json"
    assert lines[b"content-length"] == b"8"
    assert head[-1] == b'|{"a": 1}'
    assert b"cookie" not in lines


async def test_a_request_left_mid_head_or_mid_body_never_leaves_its_connection_pooled() -> None:
    """Cancelled while waiting for the answer's head, or left after one piece of its body:
    each connection is closed at once (the provider stops generating), and the next request,
    on a client of one connection, gets a new one, never a half-read one."""
    hung_up: list[str] = []
    answering = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for head, _ in requests(reader):
            if b"/silent" in head:
                answering.set()
                await reader.read()  # until the client hangs up
                hung_up.append("mid-head")
                return
            if b"/endless" in head:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")
                await writer.drain()
                await reader.read()
                hung_up.append("mid-body")
                return
            writer.write(response(b"ok"))
            await writer.drain()

    async with (
        serving(handler) as (url, connections),
        client(max_connections=1, max_keepalive_connections=1) as http,
        asyncio.timeout(30),  # fails rather than hangs (a connection kept busy: PoolTimeout)
    ):

        async def call(path: str) -> bytes:
            async with streamed(
                http, "POST", url + path, content=b"{}", headers={}, timeout=TIMEOUT
            ) as answer:
                async for piece in answer.aiter_bytes():
                    return piece
            return b""

        waiting = asyncio.ensure_future(call("/silent"))
        await answering.wait()
        waiting.cancel()  # mid-head: the client went away before the first token
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await call("/endless") == b"hi"  # mid-body: left after the first piece
        assert await call("/fine") == b"ok"
        assert await call("/fine") == b"ok"  # read whole: its connection kept
        while len(hung_up) < 2:
            await asyncio.sleep(0.01)
    assert hung_up == ["mid-head", "mid-body"]
    assert len(connections) == 3


async def test_the_connect_timeout_of_the_policy_bounds_a_connect_that_hangs() -> None:
    """A provider host that does not answer SYNs (a listener whose backlog is full): the
    policy's ``connect_timeout`` ends the wait, a retryable connection error."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):  # queued, never accepted: further SYNs are dropped
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    policy = StreamPolicy(max_attempts=1, connect_timeout=0.2)
    try:
        async with client() as http, asyncio.timeout(30):  # fails rather than hangs
            with pytest.raises(ProviderError, match="Timed out connecting") as timed_out:
                async for _ in sse_post(
                    http, f"http://127.0.0.1:{port}/v1/chat/completions", provider="openai",
                    headers={}, body=b"{}", policy=policy,
                ):  # fmt: skip
                    pass
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert isinstance(timed_out.value.__cause__, httpx.ConnectTimeout)
    assert timed_out.value.retryable
