"""A loopback OpenAI-compatible provider for benchmarks, run in its own process.

``python -m bench._fake_provider`` prints ``PORT <n>`` and serves until stdin closes. It answers
every request with a chunked ``text/event-stream`` in OpenAI's Chat Completions format (a role
chunk, the content tokens, a finish chunk, a usage chunk, ``[DONE]``), one HTTP chunk per piece.

Connections are kept alive, as providers' API servers keep them (a client reuses one for its
next request); before the twenty-sixth session's runs the fake closed each after its reply.

The last message's text steers it (a small copy of ``tests/support/fake_providers.py``, kept
self-contained so the bench does not import the test package):
``[tokens=N delay=MS first=MS]`` sets the number of tokens, the gap between them and the wait
before the first one (defaults 20, 5, 0); ``[hold]`` sends the role chunk and then nothing until
the client leaves. Each token's text is the sender's ``time.perf_counter()`` (CLOCK_MONOTONIC,
shared by every process on the machine) followed by a space, so a client can tell when it left.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any

_DIRECTIVE = re.compile(r"\[tokens=(\d+) delay=(\d+) first=(\d+)\]")


def _sse(data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _piece(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _read_body(reader: asyncio.StreamReader, prefix: bytes = b"") -> dict[str, Any] | None:
    """The next request's JSON body (``prefix``: its first bytes, already read), or ``None``
    when the client closed the connection."""
    try:
        head = prefix + await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    length = 0
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    raw = await reader.readexactly(length)
    body: dict[str, Any] = json.loads(raw) if raw else {}
    return body


async def _reply(writer: asyncio.StreamWriter, prompt: str) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(_piece(_sse(_chunk({"role": "assistant", "content": ""}))))
    await writer.drain()
    if "[hold]" in prompt:
        await asyncio.Event().wait()  # until the client leaves (the caller cancels us)
    match = _DIRECTIVE.search(prompt)
    tokens, delay_ms, first_ms = (int(g) for g in match.groups()) if match else (20, 5, 0)
    for index in range(tokens):
        wait = first_ms if index == 0 else delay_ms
        if wait:
            await asyncio.sleep(wait / 1000)
        delta = {"content": f"{time.perf_counter():.6f} "}
        writer.write(_piece(_sse(_chunk(delta))))
        await writer.drain()
    usage = _chunk({}) | {"choices": []}
    usage["usage"] = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
    tail = _sse(_chunk({}, "stop")) + _sse(usage) + _sse("[DONE]")
    writer.write(_piece(tail) + b"0\r\n\r\n")
    await writer.drain()


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    prefix = b""
    try:
        while (body := await _read_body(reader, prefix)) is not None:
            messages = body.get("messages") or [{}]
            content = messages[-1].get("content", "")
            prompt = content if isinstance(content, str) else json.dumps(content)
            sending = asyncio.create_task(_reply(writer, prompt))
            # EOF (b"") when the client goes; a byte of its next request once the reply is whole
            leaving = asyncio.create_task(reader.read(1))
            await asyncio.wait({sending, leaving}, return_when=asyncio.FIRST_COMPLETED)
            for task in (sending, leaving):
                task.cancel()
            sent, left = await asyncio.gather(sending, leaving, return_exceptions=True)
            if isinstance(sent, BaseException) or left == b"":
                return  # the client left (mid-reply, or it closed the connection)
            prefix = left if isinstance(left, bytes) else b""
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _main() -> None:
    server = await asyncio.start_server(_connection, "127.0.0.1", 0, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_main())
