"""``Http11Transport`` at the edges: raw servers on loopback, compared with httpx's default
transport (httpcore) where the two should agree.

These began as a bug hunt: the cases under "Found by the hunt" failed before their fixes (a
pooled connection the server had closed was reused, an early 413 was lost to a WriteError, a
streamed upload was held back, closing the client mid-body truncated it silently, and framings
h11 reads were refused); the others pin down behaviour the transport got right.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import trustme
import uvloop

from tests.support.raw_http import Handler, client, read_request, requests, response, serving
from whalli.adapters.http11 import Http11Transport


def reference(**options: object) -> httpx.AsyncClient:
    """httpx's own default transport (httpcore), to compare with."""
    return httpx.AsyncClient(timeout=5.0, **options)  # type: ignore[arg-type]


def pool(http: httpx.AsyncClient) -> Http11Transport:
    transport = http._transport
    assert isinstance(transport, Http11Transport)
    return transport


def pool_state(http: httpx.AsyncClient) -> tuple[int, int, int]:
    """(open, idle, reserved) connections of the client's transport."""
    t = pool(http)
    return len(t._open), sum(map(len, t._idle.values())), t._reserved


def fixed_answer(raw: bytes) -> Handler:
    """A server answering every request on a connection with ``raw``, then closing."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()

    return handler


async def both(raw: bytes) -> list[tuple[int, bytes] | str]:
    """What httpcore and then Http11Transport make of the answer ``raw``."""
    results: list[tuple[int, bytes] | str] = []
    async with serving(fixed_answer(raw)) as (url, _), asyncio.timeout(10):
        for make in (reference, client):
            async with make() as http:
                try:
                    r = await http.get(url)
                    results.append((r.status_code, r.content))
                except httpx.HTTPError as e:
                    results.append(type(e).__name__)
    return results


# ---------------------------------------------------------------------------------------------
# Found by the hunt (each failed before its fix)
# ---------------------------------------------------------------------------------------------


def keep_alive_then_close() -> Handler:
    """Answers keep-alive (no ``Connection: close``), then closes at once: the next request must
    not be written on this connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(response(b"ok"))
        await writer.drain()

    return handler


async def test_reference_skips_a_pooled_connection_the_server_already_closed() -> None:
    async with (
        serving(keep_alive_then_close()) as (url, connections),
        asyncio.timeout(10),
        reference() as http,
    ):
        for _ in range(5):
            assert (await http.get(url)).text == "ok"
        assert len(connections) == 5


async def test_a_pooled_connection_the_server_already_closed_is_not_reused() -> None:
    async with (
        serving(keep_alive_then_close()) as (url, connections),
        asyncio.timeout(10),
        client() as http,
    ):
        for _ in range(5):
            assert (await http.get(url)).text == "ok"
        assert len(connections) == 5


def early_413(closed: asyncio.Event) -> Handler:
    """Answers 413 after the request head, then half-closes (FIN) and drains the rest of the
    body, as a polite server limiting uploads does (no reset: the answer cannot be lost)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n"
                     b"Connection: close\r\n\r\nbig")  # fmt: skip
        await writer.drain()
        writer.write_eof()
        closed.set()
        await reader.read()  # the rest of the body, until the client is done

    return handler


async def upload_until(closed: asyncio.Event) -> AsyncIterator[bytes]:
    yield b"x" * (64 * 1024)  # sent at once (a full write chunk)
    await closed.wait()  # the server has answered and hung up
    await asyncio.sleep(0.05)
    yield b"y" * (64 * 1024)


async def test_reference_returns_an_early_413() -> None:
    closed = asyncio.Event()
    async with serving(early_413(closed)) as (url, _), reference() as http, asyncio.timeout(10):
        r = await http.post(url, content=upload_until(closed))
        assert (r.status_code, r.text) == (413, "big")


async def test_an_early_413_is_returned_rather_than_a_write_error() -> None:
    closed = asyncio.Event()
    async with serving(early_413(closed)) as (url, _), client() as http, asyncio.timeout(10):
        r = await http.post(url, content=upload_until(closed))
        assert (r.status_code, r.text) == (413, "big")
        assert pool_state(http) == (0, 0, 0)


# Framings httpcore (h11) reads that llhttp's strict defaults refused; the transport now reads
# them too (Content-Length beside chunked: chunked wins, and the connection is not reused).
LENIENT_FRAMINGS = {
    "content-length-and-chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "bare-lf-line-endings": b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
    "space-after-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5 \r\nhello\r\n0\r\n\r\n",
}
# Framings h11 reads and the transport refuses on purpose: repeated lengths (RFC 9112 6.3 lets a
# recipient reject them) and obs-fold headers (reading them needs llhttp's lenient_headers,
# which also lets control characters through).
REFUSED_FRAMINGS = {
    "duplicate-equal-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
    b"Content-Length: 5\r\n\r\nhello",
    "content-length-list": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello",
    "obs-fold-header": b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 5\r\n\r\nhello",
}


@pytest.mark.parametrize("raw", LENIENT_FRAMINGS.values(), ids=LENIENT_FRAMINGS.keys())
async def test_framings_httpcore_accepts_are_read_alike(raw: bytes) -> None:
    reference_result, ours = await both(raw)
    assert reference_result == (200, b"hello")
    assert ours == reference_result


async def test_an_answer_framed_both_ways_does_not_leave_its_connection_for_reuse() -> None:
    answer = LENIENT_FRAMINGS["content-length-and-chunked"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # would take a next request on the same connection
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(answer)
            await writer.drain()

    async with serving(handler) as (url, connections), client() as http, asyncio.timeout(10):
        assert (await http.get(url)).content == b"hello"
        assert pool_state(http) == (0, 0, 0)
        assert (await http.get(url)).content == b"hello"
        assert len(connections) == 2


@pytest.mark.parametrize("raw", REFUSED_FRAMINGS.values(), ids=REFUSED_FRAMINGS.keys())
async def test_repeated_lengths_and_folded_headers_are_refused(raw: bytes) -> None:
    _, ours = await both(raw)
    assert ours == "RemoteProtocolError"


def tls_server_without_close_notify(
    tls: ssl.SSLContext, answer: bytes
) -> tuple[int, threading.Thread, socket.socket]:
    """A blocking TLS server (one connection, in a thread) that answers and then closes the
    socket without a TLS close_notify, as many servers and load balancers do."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        raw, _ = listener.accept()
        with tls.wrap_socket(raw, server_side=True) as conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(answer)
        # SSLSocket.close() sends no close_notify: the TCP stream just ends

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, listener


def tls_pair(name: str = "127.0.0.1") -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server_tls)
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    return server_tls, trusted


EOF_FRAMED = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello, all of it"


async def tls_eof_framed(make: Callable[..., httpx.AsyncClient]) -> bytes:
    server_tls, trusted = tls_pair()
    port, thread, listener = tls_server_without_close_notify(server_tls, EOF_FRAMED)
    try:
        async with make(verify=trusted) as http, asyncio.timeout(10):
            return (await http.get(f"https://127.0.0.1:{port}/")).content
    finally:
        await asyncio.to_thread(thread.join, 5)
        listener.close()


async def test_a_tls_body_ended_without_close_notify_is_read() -> None:
    assert await tls_eof_framed(reference) == b"hello, all of it"
    assert await tls_eof_framed(client) == b"hello, all of it"


async def interactive_upload(make: Callable[..., httpx.AsyncClient]) -> str:
    """The client sends a first piece of a streamed body and waits for the server to have it
    before sending the next (a body produced as answers come, or a slow producer)."""
    got_first = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        assert await reader.readuntil(b"\r\n") == b"5\r\n"
        assert await reader.readexactly(7) == b"first\r\n"
        got_first.set()
        rest = await reader.readuntil(b"0\r\n\r\n")
        assert rest == b"6\r\nsecond\r\n0\r\n\r\n"
        writer.write(response(b"ok"))
        await writer.drain()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        await got_first.wait()
        yield b"second"

    async with serving(handler) as (url, _), make() as http:
        async with asyncio.timeout(2):  # hangs for good if the first piece is held back
            return (await http.post(url, content=body())).text


async def test_reference_sends_each_piece_of_a_streamed_body_as_it_comes() -> None:
    assert await interactive_upload(reference) == "ok"


async def test_each_piece_of_a_streamed_body_is_sent_as_it_comes() -> None:
    assert await interactive_upload(client) == "ok"


async def close_client_mid_body(make: Callable[..., httpx.AsyncClient]) -> str:
    """The client is closed (an app shutting down) while another task waits for more of a body
    framed by the connection's end."""
    got_part = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart")
        await writer.drain()
        await reader.read()  # more would come: the client hangs up first

    async def read(http: httpx.AsyncClient, url: str) -> str:
        try:
            async with http.stream("GET", url) as r:
                body = b""
                async for piece in r.aiter_bytes():
                    body += piece
                    got_part.set()
        except httpx.HTTPError as e:
            return type(e).__name__
        return f"read {body!r} as the whole body"

    async with serving(handler) as (url, _), asyncio.timeout(10):
        http = make()
        reader = asyncio.ensure_future(read(http, url))
        await got_part.wait()
        await asyncio.sleep(0.05)  # the reader waits for more
        await http.aclose()
        return await reader


async def test_reference_fails_a_body_cut_by_closing_the_client() -> None:
    assert await close_client_mid_body(reference) == "ReadError"


async def test_a_body_cut_by_closing_the_client_is_an_error() -> None:
    assert "Error" in await close_client_mid_body(client)


# ---------------------------------------------------------------------------------------------
# Behaviour the transport gets right (regression suite)
# ---------------------------------------------------------------------------------------------


def keep_alive_server(
    answer: Callable[[bytes], bytes], heads: list[bytes] | None = None
) -> Handler:
    """Answers every request on a connection with ``answer(head)``, keeping it alive."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for head, body in requests(reader):
            if heads is not None:
                heads.append(head + body)
            writer.write(answer(head))
            await writer.drain()

    return handler


async def test_interim_answers_other_than_100_are_skipped_and_the_connection_kept() -> None:
    raw = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 5\r\n\r\nhello"
    )
    async with (
        serving(keep_alive_server(lambda _: raw)) as (url, connections),
        client() as http,
        asyncio.timeout(10),
    ):
        for _ in range(2):
            r = await http.get(url)
            assert (r.status_code, r.reason_phrase, r.content) == (201, "Created", b"hello")
            assert "link" not in r.headers
            assert r.headers["x-final"] == "yes"
        assert len(connections) == 1


async def test_an_answer_sent_byte_by_byte_is_read_whole() -> None:
    raw = (
        b"HTTP/1.1 200 Fine Thanks\r\nX-Long: " + b"v" * 300 + b"\r\nX-Two: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for i in range(len(raw)):
            writer.write(raw[i : i + 1])
            await writer.drain()
            if i % 16 == 0:
                await asyncio.sleep(0.001)  # separate packets, the status line and names split

    async with serving(handler) as (url, _), client() as http, asyncio.timeout(10):
        r = await http.get(url)
        assert (r.status_code, r.reason_phrase, r.content) == (200, "Fine Thanks", b"hello!")
        assert r.headers["x-long"] == "v" * 300
        assert r.headers["x-two"] == "2"
        assert "x-trailer" not in r.headers


async def test_chunk_extensions_and_trailers_leave_the_connection_reusable() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"
    )
    async with (
        serving(keep_alive_server(lambda _: raw)) as (url, connections),
        client() as http,
        asyncio.timeout(10),
    ):
        assert (await http.get(url)).content == b"hello"
        assert (await http.get(url)).content == b"hello"
        assert len(connections) == 1
        assert pool_state(http) == (1, 1, 0)


async def test_the_request_target_is_the_raw_path_with_its_query() -> None:
    heads: list[bytes] = []
    async with (
        serving(keep_alive_server(lambda _: response(b"ok"), heads)) as (url, _),
        client() as http,
        asyncio.timeout(10),
    ):
        await http.get(f"{url}/a%20b/c%2Fd?x=1&y=%2F&z=%C3%A9#frag")
        await http.get(f"{url}/p", params={"q": "a b&c"})
    assert heads[0].split(b"\r\n")[0] == b"GET /a%20b/c%2Fd?x=1&y=%2F&z=%C3%A9 HTTP/1.1"
    assert heads[1].split(b"\r\n")[0] == b"GET /p?q=a+b%26c HTTP/1.1"


async def test_bodiless_and_empty_bodies_are_framed_as_httpcore_does() -> None:
    heads: list[bytes] = []
    async with (
        serving(keep_alive_server(lambda _: response(b"ok"), heads)) as (url, connections),
        client() as http,
        asyncio.timeout(10),
    ):
        await http.get(url)
        await http.post(url, content=b"")
        await http.post(url, json={"a": 1})
        await http.delete(url)
        assert len(connections) == 1  # each request was framed right: the server read it whole
    get, empty_post, json_post, delete = (h.lower() for h in heads)
    assert b"content-length" not in get
    assert b"transfer-encoding" not in get
    assert get.endswith(b"\r\n\r\n")
    assert b"\r\ncontent-length: 0\r\n" in empty_post
    assert json_post.endswith(b'\r\n\r\n{"a":1}')
    assert b"content-length" not in delete


async def test_ipv6_literal_hosts() -> None:
    heads: list[bytes] = []
    try:
        cm = serving(keep_alive_server(lambda _: response(b"v6"), heads), host="::1")
        url, _ = await cm.__aenter__()
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        async with client() as http, asyncio.timeout(10):
            assert (await http.get(f"{url}/x")).text == "v6"
    finally:
        await cm.__aexit__(None, None, None)
    port = url.rsplit(":", 1)[1]
    assert f"\r\nHost: [::1]:{port}\r\n".encode() in heads[0]


async def test_gzip_answers_are_decoded_above_the_transport() -> None:
    packed = gzip.compress(b"zipped " * 1000)
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%b" % (
        len(packed),
        packed,
    )
    async with serving(fixed_answer(raw)) as (url, _), client() as http, asyncio.timeout(10):
        assert (await http.get(url)).text == "zipped " * 1000


async def test_an_upgrade_answer_is_a_protocol_error() -> None:
    raw = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ws\r\n\r\nxx"
    async with serving(fixed_answer(raw)) as (url, _), client() as http, asyncio.timeout(10):
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(url)
        assert pool_state(http) == (0, 0, 0)


async def test_tls_refuses_a_certificate_for_another_name() -> None:
    server_tls, trusted = tls_pair("example.org")
    async with (
        serving(keep_alive_server(lambda _: response(b"x")), tls=server_tls) as (url, _),
        client(verify=trusted) as http,
        asyncio.timeout(10),
    ):
        with pytest.raises(httpx.ConnectError):
            await http.get(url)
        assert pool_state(http) == (0, 0, 0)
        port = url.rsplit(":", 1)[1]
        with pytest.raises(httpx.ConnectError):  # resolves, but the name is not the cert's
            await http.get(f"https://localhost:{port}/")


async def test_tls_keeps_alive_and_sends_the_host_as_sni() -> None:
    server_tls, trusted = tls_pair("localhost")
    names: list[str | None] = []
    server_tls.sni_callback = lambda _s, name, _c: names.append(name)  # type: ignore[assignment,misc,func-returns-value]
    async with (
        serving(keep_alive_server(lambda _: response(b"s")), tls=server_tls) as (url, conns),
        client(verify=trusted) as http,
        asyncio.timeout(10),
    ):
        port = url.rsplit(":", 1)[1]
        for _ in range(3):
            assert (await http.get(f"https://localhost:{port}/")).text == "s"
        assert len(conns) == 1
    assert names == ["localhost"]


async def test_read_timeouts_while_waiting_for_the_head_and_between_body_pieces() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        if b"/body" in head.split(b"\r\n")[0]:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            await writer.drain()
        await reader.read()

    async with (
        serving(handler) as (url, _),
        client(timeout=httpx.Timeout(5, read=0.2)) as http,
        asyncio.timeout(10),
    ):
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{url}/head")
        async with http.stream("GET", f"{url}/body") as r:
            assert r.status_code == 200
            with pytest.raises(httpx.ReadTimeout):
                await r.aread()
        assert pool_state(http) == (0, 0, 0)


async def test_a_slow_server_within_the_read_timeout_is_read_whole() -> None:
    body = b"0123456789" * 3

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(len(body)):
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.01)

    async with (
        serving(handler) as (url, _),
        client(timeout=httpx.Timeout(5, read=0.2)) as http,
        asyncio.timeout(10),
    ):
        assert (await http.get(url)).content == body  # 0.3 s in all, 0.01 s per wait


async def test_a_fast_server_is_held_back_while_the_reader_is_slow() -> None:
    size = 8 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(b"z" * size)
        await writer.drain()

    async with serving(handler) as (url, _), client() as http, asyncio.timeout(10):
        async with http.stream("GET", url) as r:
            pieces = r.aiter_raw()
            received = len(await anext(pieces))
            await asyncio.sleep(0.3)  # the server could send it all meanwhile
            (connection,) = pool(http)._open
            assert connection._size <= 2 * 256 * 1024  # paused past 256 KiB (+ one read)
            async for piece in pieces:
                received += len(piece)
        assert received == size
        assert pool_state(http) == (1, 1, 0)


async def test_a_server_not_reading_the_upload_is_a_write_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)  # reads nothing more

    async with (
        serving(handler) as (url, _),
        client(timeout=httpx.Timeout(5, write=0.2)) as http,
        asyncio.timeout(10),
    ):
        with pytest.raises(httpx.WriteTimeout):
            await http.post(url, content=b"u" * (32 * 1024 * 1024))
        assert pool_state(http) == (0, 0, 0)


async def test_an_early_answer_from_a_server_that_reads_the_whole_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            writer.write(response(b"early"))  # before the body is read
            await writer.drain()
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)

    async with serving(handler) as (url, connections), client() as http, asyncio.timeout(10):
        for _ in range(2):
            assert (await http.post(url, content=b"b" * (4 * 1024 * 1024))).text == "early"
        assert len(connections) == 1


def parked_server(received: asyncio.Event) -> Handler:
    """Reads the request head, then answers ``/body`` with part of a body, else nothing."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/body" in head.split(b"\r\n")[0]:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
            await writer.drain()
        received.set()
        await reader.read()

    return handler


async def assert_pool_recovers(http: httpx.AsyncClient, url: str) -> None:
    await asyncio.sleep(0.01)
    assert pool_state(http) == (0, 0, 0)
    r = await http.get(f"{url}/ok", timeout=httpx.Timeout(1))
    assert r.text == "ok"


async def test_cancelling_while_waiting_for_the_head_or_reading_the_body() -> None:
    received = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"/ok" in head:
            writer.write(response(b"ok"))
            await writer.drain()
            return
        await parked_server(received)(_Replay(head, reader), writer)  # type: ignore[arg-type]

    async def read_all(path: str) -> bytes:
        async with http.stream("GET", f"{url}{path}") as r:
            return await r.aread()

    async with (
        serving(handler) as (url, _),
        client(max_connections=1, max_keepalive_connections=1) as http,
        asyncio.timeout(10),
    ):
        for path in ("/head", "/body"):
            received.clear()
            task = asyncio.ensure_future(read_all(path))
            await received.wait()
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await assert_pool_recovers(http, url)  # the one slot came back


class _Replay:
    """A reader whose first ``readuntil`` returns a head already read."""

    def __init__(self, head: bytes, reader: asyncio.StreamReader) -> None:
        self._head: bytes | None = head
        self._reader = reader

    async def readuntil(self, separator: bytes) -> bytes:
        if self._head is not None:
            head, self._head = self._head, None
            return head
        return await self._reader.readuntil(separator)

    async def read(self, n: int = -1) -> bytes:
        return await self._reader.read(n)


async def test_cancelling_while_writing_or_during_the_tls_handshake() -> None:
    reading = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.read(5)
        if first.startswith(b"GET /"):  # plain HTTP: the /ok request
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response(b"ok"))
            await writer.drain()
            return
        reading.set()
        await asyncio.sleep(5)  # a TLS hello or a POST: never read further

    async with (
        serving(handler) as (url, _),
        client(max_connections=1, max_keepalive_connections=1) as http,
        asyncio.timeout(10),
    ):
        tls_url = url.replace("http://", "https://")
        for request in (
            http.post(url, content=b"w" * (32 * 1024 * 1024)),  # blocks on flow control
            http.get(tls_url),  # the handshake never completes
        ):
            reading.clear()
            task = asyncio.ensure_future(request)
            await reading.wait()
            await asyncio.sleep(0.05)
            assert pool_state(http)[0] + pool_state(http)[2] == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await assert_pool_recovers(http, url)


async def test_cancellations_under_a_connection_limit_give_every_slot_back() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for _head, _ in requests(reader):
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with (
        serving(handler) as (url, _),
        client(max_connections=2, max_keepalive_connections=2) as http,
        asyncio.timeout(10),
    ):
        tasks = [asyncio.ensure_future(http.get(url)) for _ in range(20)]
        for delay in (0.0, 0.01, 0.025, 0.035, 0.05, 0.07):  # pool wait, head, body
            await asyncio.sleep(delay)
            for task in tasks[::3]:
                task.cancel()
            tasks = [t for t in tasks if not t.cancelled()]
            tasks = tasks[1:] + tasks[:1]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, httpx.Response | asyncio.CancelledError) for r in results), results
        await asyncio.sleep(0.01)
        open_, idle, reserved = pool_state(http)
        assert reserved == 0
        assert open_ == idle <= 2
        final = await asyncio.gather(
            *(http.get(url, timeout=httpx.Timeout(2, pool=1)) for _ in range(4))
        )
        assert [r.text for r in final] == ["ok"] * 4


def test_the_hunts_cases_also_on_uvloop() -> None:
    """The API runs uvloop, whose transports and sockets are not asyncio's: the fixed cases
    again there (a stale connection is found through uvloop's socket object)."""
    cases = [
        test_a_pooled_connection_the_server_already_closed_is_not_reused,
        test_an_early_413_is_returned_rather_than_a_write_error,
        test_each_piece_of_a_streamed_body_is_sent_as_it_comes,
        test_a_body_cut_by_closing_the_client_is_an_error,
        test_an_answer_framed_both_ways_does_not_leave_its_connection_for_reuse,
    ]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        for case in cases:
            runner.run(case())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("authorization", "Bearer sk-key\n"),  # a key read from a file with its newline
        ("authorization", "Bearer sk-key\r\nX-Injected: 1"),
        ("x-note", "a\x00b"),
        ("x-note", " padded"),
        ("bad name", "value"),
    ],
)
async def test_a_header_that_would_change_the_framing_is_refused_before_connecting(
    name: str, value: str
) -> None:
    """As httpx's own transport refuses them (``LocalProtocolError``): nothing is sent, and no
    connection is even opened for it (httpcore opens one first)."""
    answer = fixed_answer(b"HTTP/1.1 204 No Content\r\n\r\n")
    async with serving(answer) as (url, _), reference() as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.get(url, headers={name: value})
    async with serving(answer) as (url, opened), client() as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.get(url, headers={name: value})
        assert (await http.get(url, headers={"x-note": "fine"})).status_code == 204
        assert len(opened) == 1  # only the legal request's
