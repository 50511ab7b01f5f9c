"""Whalli's outbound HTTP client (httpx on ``Http11Transport``) against raw servers on loopback.

The providers' and OAuth's own tests run through this client too; these pin down what the
transport must do for any server: stream as bytes arrive, hold back a fast sender, carry large
bodies both ways, read every framing of a body, reuse only connections fit for it, keep to its
limits, speak TLS, and fail as httpx does.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncIterator

import httpx
import pytest
import trustme
import uvloop

from tests.support.raw_http import client, read_request, requests, response, serving
from whalli.adapters.http11 import Http11Transport
from whalli.adapters.outbound_http import streamed


async def test_the_client_sends_through_the_http11_transport() -> None:
    async with client() as http:
        assert isinstance(http._transport, Http11Transport)


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
        async for head, _ in requests(reader):
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


async def test_a_cookie_one_answer_sets_never_goes_back_with_later_requests() -> None:
    """One client serves every user: a server's cookie must not link their requests."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for head, _ in requests(reader):
            seen.append(head)
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: visitor=alice; Path=/\r\n"
                b"Set-Cookie: other=1\r\nContent-Length: 2\r\n\r\nok"
            )
            await writer.drain()

    async with serving(handler) as (url, _), client() as http:
        first = await http.get(f"{url}/a")
        assert first.cookies.get("visitor") == "alice"  # the answer still shows what was set
        await http.get(f"{url}/b")
        http.cookies.set("forced", "x")  # nothing put in the jar stays there either
        http.cookies.update({"forced2": "y"})
        await http.get(f"{url}/c")
    assert len(http.cookies) == 0
    cookie_lines = [
        [line for line in head.split(b"\r\n") if line.lower().startswith(b"cookie:")]
        for head in seen
    ]
    assert cookie_lines == [[], [], []]


async def test_streamed_sends_what_client_stream_sends_straight_to_the_transport() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for head, body in requests(reader):
            heads.append(head + b"|" + body)
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            )
            await writer.drain()

    timeout = httpx.Timeout(5.0, read=None)
    headers = {"authorization": "Bearer k", "accept": "text/event-stream"}
    hooked: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooked.append(request.method)

    async with serving(handler) as (url, connections), client() as http:
        async with http.stream("POST", f"{url}/x", content=b"{}", headers=headers) as r:
            via_client = [r.status_code, await r.aread()]
            assert type(r.stream).__name__ == "BoundAsyncStream"  # the client's own wrapping
        async with streamed(
            http, "POST", f"{url}/x", content=b"{}", headers=headers, timeout=timeout
        ) as r:
            assert r.request.url == f"{url}/x"
            assert type(r.stream).__name__ != "BoundAsyncStream"  # the transport's, as it came
            straight = [r.status_code, await r.aread()]
        # a client with what the straight way skips (a hook here) goes through client.stream
        http.event_hooks["request"] = [hook]
        async with streamed(
            http, "POST", f"{url}/x", content=b"{}", headers=headers, timeout=timeout
        ) as r:
            await r.aread()
        assert len(connections) == 1  # each response closed whole: one kept-alive connection
    assert straight == via_client == [200, b"ok"]
    assert heads[0] == heads[1] == heads[2]  # the same request line, headers and body
    assert b"user-agent: python-httpx" in heads[0].lower()  # the client's defaults are kept
    assert hooked == ["POST"]
    with pytest.raises(RuntimeError, match="closed"):
        async with streamed(
            http, "POST", f"{url}/x", content=b"{}", headers=headers, timeout=timeout
        ):
            pass


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


async def test_a_streamed_upload_is_sent_chunked() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            piece = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += piece[:-2]
        writer.write(response(hashlib.sha256(body).hexdigest().encode()))
        await writer.drain()

    async def upload() -> AsyncIterator[bytes]:
        for i in range(50):
            yield bytes([i]) * 1000

    expected = hashlib.sha256(b"".join(bytes([i]) * 1000 for i in range(50))).hexdigest()
    async with serving(handler) as (url, _), client() as http:
        assert (await http.post(url, content=upload())).text == expected


async def test_a_body_without_length_ends_with_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of ")
        await writer.drain()
        writer.write(b"it")
        await writer.drain()

    async with serving(handler) as (url, connections), client() as http:
        assert (await http.get(url)).text == "all of it"
        assert (await http.get(url)).text == "all of it"
        assert len(connections) == 2  # a body ended by closing cannot leave a connection


async def test_a_chunked_body_cut_before_its_end_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npart\r\n")
        await writer.drain()

    async with serving(handler) as (url, _), client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url)


async def test_a_malformed_answer_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP/9 hello\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serving(handler) as (url, _), client() as http, asyncio.timeout(10):
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url)


async def test_an_interim_100_continue_is_skipped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"final"))
        await writer.drain()

    async with serving(handler) as (url, _), client() as http:
        answer = await http.post(url, content=b"x")
        assert (answer.status_code, answer.text) == (200, "final")


async def test_bodiless_answers_and_head_requests() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for head, _ in requests(reader):
            if head.startswith(b"HEAD"):  # the length of a body that is not sent
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    async with serving(handler) as (url, connections), client() as http, asyncio.timeout(10):
        assert (await http.get(url)).status_code == 204
        assert (await http.get(url)).status_code == 204
        assert len(connections) == 1  # a 204 ends at its head: the connection is kept
        head = await http.head(url)
        assert (head.status_code, head.headers["content-length"], head.content) == (
            200,
            "1000",
            b"",
        )
        assert (await http.get(url)).status_code == 204
        assert len(connections) == 2  # not after a HEAD: the next answer could be misread


async def test_a_connection_the_server_closes_or_talks_on_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for head, _ in requests(reader):
            line = head.split(b"\r\n")[0]
            if b"/close-header" in line:  # says so, then keeps the socket open
                writer.write(response(b"ok", close=True))
            elif b"/chatter" in line:  # bytes after the answer, while the client is idle
                writer.write(response(b"ok"))
                await writer.drain()
                await asyncio.sleep(0.02)
                writer.write(b"unasked")
            else:
                writer.write(response(b"ok"))
            await writer.drain()

    async with serving(handler) as (url, connections), client() as http, asyncio.timeout(10):
        assert (await http.get(f"{url}/close-header")).text == "ok"
        assert (await http.get(f"{url}/a")).text == "ok"
        assert len(connections) == 2
        assert (await http.get(f"{url}/chatter")).text == "ok"
        await asyncio.sleep(0.1)
        assert (await http.get(f"{url}/b")).text == "ok"
        assert len(connections) == 3
        assert (await http.get(f"{url}/c")).text == "ok"
        assert len(connections) == 3  # a plain answer leaves its connection for the next


async def test_idle_connections_expire() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _ in requests(reader):
            writer.write(response(b"ok"))
            await writer.drain()

    transport = Http11Transport(ssl_context=ssl.create_default_context(), keepalive_expiry=0.1)
    async with (
        serving(handler) as (url, connections),
        httpx.AsyncClient(transport=transport) as http,
    ):
        await http.get(url)
        await http.get(url)
        assert len(connections) == 1
        await asyncio.sleep(0.2)
        await http.get(url)
        assert len(connections) == 2


async def test_requests_wait_for_a_free_connection_up_to_the_pool_timeout() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for head, _ in requests(reader):
            if b"/slow" in head.split(b"\r\n")[0]:
                await release.wait()
            writer.write(response(b"ok"))
            await writer.drain()

    async with (
        serving(handler) as (url, connections),
        client(max_connections=1, max_keepalive_connections=1) as http,
        asyncio.timeout(10),
    ):
        slow = asyncio.ensure_future(http.get(f"{url}/slow"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):  # the one connection is busy
            await http.get(url, timeout=httpx.Timeout(5, pool=0.1))
        waiting = asyncio.ensure_future(http.get(url))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        release.set()
        assert (await slow).text == "ok"
        assert (await waiting).text == "ok"
        assert len(connections) == 1  # the waiting request took the freed connection


def test_every_case_also_on_uvloop() -> None:
    """The servers run uvloop, whose transports are not asyncio's classes: the same cases there."""
    cases = [
        test_the_client_sends_through_the_http11_transport,
        test_a_streamed_body_arrives_piece_by_piece,
        test_large_bodies_both_ways_survive_flow_control,
        test_keep_alive_reuses_a_connection_and_replaces_one_the_server_closed,
        test_a_cookie_one_answer_sets_never_goes_back_with_later_requests,
        test_streamed_sends_what_client_stream_sends_straight_to_the_transport,
        test_a_connection_cut_mid_body_is_a_transport_error,
        test_closing_a_stream_early_closes_its_connection,
        test_a_refused_connection_is_a_connect_error,
        test_a_read_timeout_raises_read_timeout,
        test_tls_with_a_trusted_certificate_and_refused_with_an_unknown_one,
        test_a_streamed_upload_is_sent_chunked,
        test_a_body_without_length_ends_with_the_connection,
        test_a_chunked_body_cut_before_its_end_is_a_protocol_error,
        test_a_malformed_answer_is_a_protocol_error,
        test_an_interim_100_continue_is_skipped,
        test_bodiless_answers_and_head_requests,
        test_a_connection_the_server_closes_or_talks_on_is_not_reused,
        test_idle_connections_expire,
        test_requests_wait_for_a_free_connection_up_to_the_pool_timeout,
    ]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        for case in cases:
            runner.run(case())
