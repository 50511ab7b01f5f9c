"""Loopback AI providers speaking OpenAI's and Anthropic's streaming wire formats.

A ``FakeProviderServer`` is a real HTTP/1.1 server on 127.0.0.1 (asyncio streams, in the test's
event loop) that answers streaming requests with chunked ``text/event-stream`` bodies, one HTTP
chunk per scripted piece. Each test scripts the next answers (``script``); without a script the
server plays a well-behaved provider, checking credentials and headers like the real one
(OpenAI sends the usage chunk only when ``stream_options.include_usage`` asks for it; asked
for a ``response_format``, OpenAI answers JSON, and Anthropic, forced to call a tool, calls
it). It records every request (its JSON body parsed), and notices when a client leaves before
the answer is finished (``disconnected``).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

API_KEY = "sk-test-0123456789abcdef"
DELTAS = ("Hello", ", ", "world", "!")
# The JSON reply of the well-behaved providers asked for JSON, in the pieces they stream
JSON_PIECES = ('{"greet', 'ing": "Hel', 'lo, world!"}')
PROMPT_TOKENS, COMPLETION_TOKENS = 11, 4


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any]


@dataclass
class Reply:
    """One scripted answer: a JSON body (``chunks is None``) or a stream of SSE pieces."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    chunks: Sequence[bytes] | None = None
    first_delay: float = 0.0  # before the first piece
    delay: float = 0.0  # between pieces
    hold: bool = False  # after the pieces, keep the connection open until the client leaves
    abort: bool = False  # drop the connection instead of ending the chunked body
    # after the first ``gate_after`` pieces, wait until ``gate`` is set (the test's go-ahead)
    gate: asyncio.Event | None = None
    gate_after: int = 1


Script = Reply | Callable[[RecordedRequest], Reply]


def sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


# --- OpenAI Chat Completions ----------------------------------------------------------------------
def openai_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def openai_stream(
    deltas: Sequence[str] = DELTAS,
    *,
    usage: tuple[int, int] | None = (PROMPT_TOKENS, COMPLETION_TOKENS),
    finish_reason: str = "stop",
    done: bool = True,
) -> list[bytes]:
    pieces = [sse(openai_chunk({"role": "assistant", "content": ""}))]
    pieces += [sse(openai_chunk({"content": text})) for text in deltas]
    pieces.append(sse(openai_chunk({}, finish_reason)))
    if usage is not None:
        prompt, completion = usage
        chunk = openai_chunk({}) | {"choices": []}
        chunk["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        pieces.append(sse(chunk))
    if done:
        pieces.append(sse("[DONE]"))
    return pieces


@dataclass(frozen=True)
class ScriptedCall:
    """A tool call a fake provider streams: its arguments in the pieces given."""

    id: str
    name: str
    pieces: Sequence[str]

    @property
    def arguments(self) -> str:
        return "".join(self.pieces)


def openai_tool_stream(
    calls: Sequence[ScriptedCall],
    deltas: Sequence[str] = (),
    *,
    usage: tuple[int, int] | None = (PROMPT_TOKENS, COMPLETION_TOKENS),
    finish_reason: str = "tool_calls",
) -> list[bytes]:
    """Tool calls as OpenAI streams them: a call's first piece has its ``index``, ``id``,
    ``type`` and ``function.name`` (and empty arguments), the next ones only ``index`` and
    ``function.arguments`` fragments; the last chunk's finish reason is ``tool_calls``."""
    pieces = [sse(openai_chunk({"role": "assistant", "content": None if not deltas else ""}))]
    pieces += [sse(openai_chunk({"content": text})) for text in deltas]
    for index, call in enumerate(calls):
        first = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        pieces.append(sse(openai_chunk({"tool_calls": [first]})))
        for fragment in call.pieces:
            piece = {"index": index, "function": {"arguments": fragment}}
            pieces.append(sse(openai_chunk({"tool_calls": [piece]})))
    return _openai_ending(pieces, usage, finish_reason)


def _openai_ending(
    pieces: list[bytes], usage: tuple[int, int] | None, finish_reason: str
) -> list[bytes]:
    pieces.append(sse(openai_chunk({}, finish_reason)))
    if usage is not None:
        prompt, completion = usage
        chunk = openai_chunk({}) | {"choices": []}
        chunk["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        pieces.append(sse(chunk))
    pieces.append(sse("[DONE]"))
    return pieces


def openai_error(message: str, code: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def openai_default(expected_key: str = API_KEY) -> Callable[[RecordedRequest], Reply]:
    def reply(request: RecordedRequest) -> Reply:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if given != expected_key:
            # The real message echoes (part of) the key: adapters must never pass it on.
            body = openai_error(f"Incorrect API key provided: {given}.", "invalid_api_key")
            return Reply(status=401, body=body)
        include_usage = (request.body.get("stream_options") or {}).get("include_usage") is True
        usage = (PROMPT_TOKENS, COMPLETION_TOKENS) if include_usage else None
        response_format = (request.body.get("response_format") or {}).get("type", "text")
        deltas = DELTAS if response_format == "text" else JSON_PIECES
        return Reply(chunks=openai_stream(deltas, usage=usage))

    return reply


# --- Anthropic Messages ---------------------------------------------------------------------------
def anthropic_stream(
    deltas: Sequence[str] = DELTAS,
    *,
    input_tokens: int = PROMPT_TOKENS,
    output_tokens: int = COMPLETION_TOKENS,
    stop_reason: str = "end_turn",
    stop: bool = True,
) -> list[bytes]:
    message = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-test",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    pieces = [
        sse({"type": "message_start", "message": message}, "message_start"),
        sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
        sse({"type": "ping"}, "ping"),
    ]
    for text in deltas:
        delta = {"type": "text_delta", "text": text}
        pieces.append(
            sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        )
    pieces.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    pieces.append(
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
            "message_delta",
        )
    )
    if stop:
        pieces.append(sse({"type": "message_stop"}, "message_stop"))
    return pieces


def anthropic_tool_stream(
    calls: Sequence[ScriptedCall],
    deltas: Sequence[str] = (),
    *,
    input_tokens: int = PROMPT_TOKENS,
    output_tokens: int = COMPLETION_TOKENS,
) -> list[bytes]:
    """A reply as Anthropic streams it when it calls tools: a text block (when ``deltas``),
    then one ``tool_use`` block per call (id and name at its start, an empty ``input``, its
    input as ``input_json_delta`` pieces, the first one empty as the API sends it), then
    ``stop_reason: "tool_use"``."""
    message = {
        "id": "msg_tools",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-test",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    pieces = [sse({"type": "message_start", "message": message}, "message_start")]
    block = 0
    if deltas:
        start = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        pieces.append(sse(start, "content_block_start"))
        for text in deltas:
            delta = {"type": "text_delta", "text": text}
            event = {"type": "content_block_delta", "index": 0, "delta": delta}
            pieces.append(sse(event, "content_block_delta"))
        pieces.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        block = 1
    for call in calls:
        tool_use = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        start = {"type": "content_block_start", "index": block, "content_block": tool_use}
        pieces.append(sse(start, "content_block_start"))
        for fragment in ("", *call.pieces):
            delta = {"type": "input_json_delta", "partial_json": fragment}
            event = {"type": "content_block_delta", "index": block, "delta": delta}
            pieces.append(sse(event, "content_block_delta"))
        pieces.append(sse({"type": "content_block_stop", "index": block}, "content_block_stop"))
        block += 1
    ending = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }
    pieces.append(sse(ending, "message_delta"))
    pieces.append(sse({"type": "message_stop"}, "message_stop"))
    return pieces


def anthropic_error(type_: str, message: str = "Something failed.") -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def anthropic_error_event(type_: str = "overloaded_error") -> bytes:
    return sse(anthropic_error(type_, "Overloaded"), "error")


def anthropic_default(expected_key: str = API_KEY) -> Callable[[RecordedRequest], Reply]:
    def reply(request: RecordedRequest) -> Reply:
        if request.headers.get("x-api-key") != expected_key:
            return Reply(
                status=401, body=anthropic_error("authentication_error", "invalid x-api-key")
            )
        if not request.headers.get("anthropic-version"):
            return Reply(
                status=400,
                body=anthropic_error(
                    "invalid_request_error", "anthropic-version: header is required"
                ),
            )
        if "max_tokens" not in request.body:
            return Reply(
                status=400,
                body=anthropic_error("invalid_request_error", "max_tokens: Field required"),
            )
        output_format = (request.body.get("output_config") or {}).get("format")
        if output_format is not None and output_format.get("type") == "json_schema":
            return Reply(chunks=anthropic_stream(JSON_PIECES))  # the JSON, as Claude's text
        forced = request.body.get("tool_choice") or {}
        if forced.get("type") == "tool":  # the API then answers with that tool's call only
            call = ScriptedCall("toolu_forced", forced["name"], JSON_PIECES)
            return Reply(chunks=anthropic_tool_stream([call]))
        return Reply(chunks=anthropic_stream())

    return reply


# --- the server -----------------------------------------------------------------------------------
class FakeProviderServer:
    """``async with FakeProviderServer(openai_default()) as server:``, at ``server.url``."""

    def __init__(self, default: Callable[[RecordedRequest], Reply]) -> None:
        self.requests: list[RecordedRequest] = []
        self.disconnected = asyncio.Event()  # a client left before its answer was finished
        self.early_disconnects = 0
        self._default = default
        self._scripts: deque[Script] = deque()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Script) -> None:
        """Answer the next requests with ``replies``, in order, then go back to the default."""
        self._scripts.extend(replies)

    async def __aenter__(self) -> FakeProviderServer:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            script = self._scripts.popleft() if self._scripts else self._default
            reply = script(request) if callable(script) else script
            sending = asyncio.create_task(_send(writer, reply))
            leaving = asyncio.create_task(reader.read(1))  # EOF (b"") when the client goes
            done, _ = await asyncio.wait({sending, leaving}, return_when=asyncio.FIRST_COMPLETED)
            if sending not in done:
                self.early_disconnects += 1
                self.disconnected.set()
            for pending in (sending, leaving):
                pending.cancel()
            await asyncio.gather(sending, leaving, return_exceptions=True)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._connections.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    body = json.loads(raw) if raw else {}
    return RecordedRequest(method=method, path=target, headers=headers, body=body)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded"  # Anthropic's 529


async def _send(writer: asyncio.StreamWriter, reply: Reply) -> None:
    head = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in reply.headers.items()]
    if reply.chunks is None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await writer.drain()
        return
    head += [
        "Content-Type: text/event-stream",
        "Cache-Control: no-cache",
        "Transfer-Encoding: chunked",
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    await writer.drain()
    for index, piece in enumerate(reply.chunks):
        wait = reply.first_delay if index == 0 else reply.delay
        if wait:
            await asyncio.sleep(wait)
        if reply.gate is not None and index == reply.gate_after:
            await reply.gate.wait()
        writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await writer.drain()
    if reply.hold:
        await asyncio.Event().wait()  # until the client leaves (the caller cancels us)
    if reply.abort:
        writer.transport.abort()
        return
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def split_pieces(pieces: Sequence[bytes], size: int) -> list[bytes]:
    """The same bytes re-cut into pieces of ``size`` bytes (lines and characters split apart)."""
    data = b"".join(pieces)
    return [data[i : i + size] for i in range(0, len(data), size)]
