"""A minimal HTTP/1.1 client for the timed requests of ``bench_chat``.

The client shares the machine's two cores with what it measures. httpx spent 5.5-6.9 ms of
CPU per 20-token reply here (``time.process_time()`` over a c=16 loop), as much as the API
itself on ``/v1``: at c=16 the rig took a third of the machine from the system under test, and
more from the slower way (every CPU-bound second the API waits for, the client competes for
too). Load generators are kept lean for that reason (wrk, h2load). This one reads a response
off an ``asyncio.StreamReader``: the status line, the headers, then the body by
``Content-Length``, chunked, or to the end of the connection. Keep-alive connections are
pooled per client; a response left before its end closes its connection.

Only what the bench sends is supported: a request line, a few headers, an optional JSON body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit


class LeanResponse:
    def __init__(self, status: int, headers: dict[str, str], reader: asyncio.StreamReader) -> None:
        self.status_code, self.headers, self._reader = status, headers, reader
        self.complete = False  # the body was read to its end (the connection may be reused)

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked: one piece per chunk)."""
        reader, headers = self._reader, self.headers
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    await _trailer(reader)
                    self.complete = True
                    return
                data = await reader.readexactly(size + 2)
                yield data[:-2]
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length:
                yield await reader.readexactly(length)
            self.complete = True
        else:  # to the end of the connection
            while data := await reader.read(65536):
                yield data

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_raw()])

    async def json(self) -> Any:
        return json.loads(await self.aread())


async def _trailer(reader: asyncio.StreamReader) -> None:
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass


class LeanClient:
    """Requests to one origin (``base_url``) over pooled keep-alive connections."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http:// origins: {base_url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._authority = f"{self._host}:{self._port}".encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[LeanResponse]:
        body = b"" if json_body is None else json.dumps(json_body).encode()
        head = [f"{method} {self._prefix}{path} HTTP/1.1".encode(), b"Host: " + self._authority]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}".encode())
        if json_body is not None:
            head.append(b"Content-Type: application/json")
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(b"Content-Length: %d" % len(body))
        request = b"\r\n".join(head) + b"\r\n\r\n" + body
        reader, writer = await self._connection()
        reusable = False
        try:
            writer.write(request)
            status_line, *lines = (await reader.readuntil(b"\r\n\r\n"))[:-4].split(b"\r\n")
            fields: dict[str, str] = {}
            for line in lines:
                key, _, raw = line.partition(b":")
                fields[key.decode("latin-1").strip().lower()] = raw.decode("latin-1").strip()
            response = LeanResponse(int(status_line.split(b" ", 2)[1]), fields, reader)
            yield response
            reusable = response.complete and fields.get("connection", "").lower() != "close"
        except asyncio.IncompleteReadError as e:
            raise ConnectionError("the server closed the connection mid-response") from e
        finally:
            if reusable:
                self._idle.append((reader, writer))
            else:
                writer.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        async with self.stream(method, path, json_body=json_body, headers=headers) as response:
            return response.status_code, await response.aread()

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self._host, self._port, limit=1 << 20)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
