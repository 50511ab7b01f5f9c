"""Anthropic Messages API streaming over httpx.

The stream is message_start (input tokens), content blocks (content_block_start, text deltas,
content_block_stop), message_delta (stop reason, output tokens so far), then message_stop; ping
events may come at any time and an error event may replace the rest. A tool call is a content
block of type ``tool_use`` (its id and name at its start), its input streamed as pieces of JSON
(``input_json_delta``); a reply that called tools stops with ``tool_use``.

A reply in a ``response_format`` is the input of the tool the request forced
(``anthropic_request.FORMAT_TOOL``): its JSON pieces are passed on as the reply's text, and its
``tool_use`` stop as ``stop``, so that the caller sees the JSON answer it asked for, not a tool
call. Text Claude writes beside it is not part of that answer and is left out. A format
asked of the API itself (``anthropic_request.native_format``: a strict schema, a model that
enforces it) comes back as text, passed on as any text.
Extended thinking comes first as ``thinking`` blocks: their ``thinking_delta`` pieces are
passed on as ``StreamReasoning`` (their signatures, and ``redacted_thinking`` blocks, are not).

A ``content_block_start`` carries a whole content block: Anthropic sends it empty, but a
compatible server or a gateway replaying a whole answer may start it with its content (its
``text``, its ``thinking``, a tool's whole ``input``), which is the block's first piece. A whole
answer in JSON (``stream: true`` ignored) is read as its stream (``anthropic_whole``).
The request's body: ``anthropic_request``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import msgspec

from whalli.adapters.ai._http import decode_json, obj, sse_post, stream_error, whole_limit
from whalli.adapters.ai._sse import SseEvent
from whalli.adapters.ai._stops import LocalStops, split_stops
from whalli.adapters.ai._streaming import (
    Sleep,
    StreamPolicy,
    is_cut,
    output_cap_chars,
    reason_of,
    refused,
    stream_cut,
    stream_with_retries,
)
from whalli.adapters.ai.anthropic_request import (
    CACHE_TTLS,
    FORMAT_TOOL,
    messages_body,
    native_format,
)
from whalli.adapters.ai.anthropic_whole import message_events
from whalli.domain.model.chats import TokenUsage
from whalli.domain.model.chats import reported_count as _count
from whalli.domain.model.errors import ProviderError
from whalli.domain.services.chat.context import estimate_tokens
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamReasoning,
    StreamStart,
    ToolCallDelta,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens


class AnthropicChatModel(ChatModel):
    """``base_url`` is the API root (``https://api.anthropic.com``)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str,
        base_url: str = "https://api.anthropic.com",
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        policy: StreamPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        prompt_cache: bool = True,
        prompt_cache_ttl: str = "5m",
    ) -> None:
        if prompt_cache_ttl not in CACHE_TTLS:
            raise ValueError(f"a prompt cache is kept 5m or 1h, not {prompt_cache_ttl!r}")
        self.provider = "anthropic"
        self._prompt_cache = prompt_cache  # ask the API to cache prompts (cache_breakpoints)
        self._cache_ttl = prompt_cache_ttl
        self._http = http
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
        self._default_max_tokens = default_max_tokens
        self._policy = policy or StreamPolicy()
        self._sleep = sleep

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        try:
            payload = messages_body(
                request,
                default_max_tokens=self._default_max_tokens,
                prompt_cache=self._prompt_cache and request.cacheable,
                cache_ttl=self._cache_ttl,
            )
        except ProviderError as e:  # an image the API would refuse: not sent
            return refused(e)
        body = msgspec.json.encode(payload)
        _, local = split_stops(request.params.stop)
        local = [*local, *request.local_stops]  # and those the model refuses (the catalog's)
        # the reply is the forced tool's input (else any text: no format, or the API's own)
        formatted = request.response_format is not None and not native_format(request)
        cap = output_cap_chars(request)
        return stream_with_retries(
            lambda: self._attempt(body, local, formatted, cap),
            provider=self.provider,
            policy=self._policy.to_answer(request),
            sleep=self._sleep,
        )

    async def _attempt(
        self, body: bytes, local: list[str], formatted: bool, cap_chars: int
    ) -> AsyncGenerator[StreamEvent, None]:
        answer = _Answer(self.provider, formatted=formatted, secrets=(self._headers["x-api-key"],))
        stops = LocalStops(local) if local else None
        left = cap_chars  # characters the model may still write (``output_cap_chars``)
        events = sse_post(
            self._http,
            self._url,
            provider=self.provider,
            headers=self._headers,
            body=body,
            policy=self._policy,
            whole=message_events,
            max_whole_bytes=whole_limit(cap_chars),
        )
        try:
            async with aclosing(events):
                async for sse in events:
                    text = answer.read(sse)
                    del sse  # a held reply waits for its next event here: keep nothing of it
                    left -= _written(text)
                    if left < 0:  # past what the model may write: ended here, as by its length
                        answer.stop_here("max_tokens")
                        break
                    if isinstance(text, ToolCallDelta | StreamReasoning | StreamStart):
                        yield text
                        continue
                    stopped = False
                    if text and stops is not None:
                        text, stopped = stops.feed(text)
                        answer.sent.append(text)
                    if text:
                        yield StreamDelta(text=text)
                    if stopped:  # closing the response ends the generation upstream
                        answer.stop_here()
                        break
                    if answer.end is not None:
                        # message_delta's stop reason (nothing with content follows it), or
                        # message_stop: the answer is complete, nothing more is read (a
                        # connection left open after it, silent, is closed, not waited on)
                        break
        except ProviderError as e:
            if not is_cut(e) or answer.stop_reason is None:
                raise
        if answer.end is None and answer.stop_reason is not None:
            # cut (dropped or closed) after message_delta (the stop reason and final counts),
            # before message_stop: nothing of the reply is missing
            answer.finish()
        if answer.end is None:
            raise stream_cut(self.provider)
        rest = stops.flush() if stops is not None else ""
        if rest:
            yield StreamDelta(text=rest)
        yield answer.end


class _Answer:
    """What one attempt's events said so far: its counts, its stop reason, its end."""

    __slots__ = (
        "blocks",
        "cache_read",
        "cache_write",
        "cache_write_1h",
        "completion_tokens",
        "end",
        "format_block",
        "format_written",
        "formatted",
        "ignored",
        "input_tokens",
        "provider",
        "secrets",
        "sent",
        "stop_reason",
    )

    def __init__(
        self, provider: str, *, formatted: bool = False, secrets: tuple[str, ...] = ()
    ) -> None:
        self.provider = provider
        self.secrets = secrets  # the request's key: never repeated in an error's message
        self.input_tokens = self.completion_tokens = 0
        self.cache_read = self.cache_write = 0  # of the prompt tokens (see ``TokenUsage``)
        self.cache_write_1h = 0  # of the cache writes, those kept an hour
        self.stop_reason: str | None = None
        self.end: StreamEnd | None = None
        self.sent: list[str] = []  # the text passed on (kept only while local stops apply)
        # tool_use blocks by their content block index: [tool call index, arguments sent]
        self.blocks: dict[int, list[int]] = {}
        # with a response_format: the content block index of the forced tool's input, the reply
        self.formatted = formatted
        self.format_block: int | None = None
        self.format_written = False
        self.ignored: set[int] = set()  # later calls of the format's tool: one reply only

    def finish(self) -> None:
        """End as the message's stop reason says, with its final counts."""
        reason = str(self.stop_reason or "unknown")
        if reason == "tool_use" and self.format_block is not None and not self.blocks:
            reason = "stop"  # the forced tool's input was the reply asked for
        self.end = StreamEnd(
            finish_reason="tool_calls" if reason == "tool_use" else reason,
            usage=self._usage(self.completion_tokens),
        )

    def stop_here(self, reason: str = "stop_sequence") -> None:
        """End at a stop sequence applied locally (or, ``max_tokens``, at the output cap).
        The output count comes only at the end of the stream, so it is estimated from the text
        (``estimate_tokens``; at the cap, by the caller, who has all of it)."""
        if reason == "max_tokens":
            self.end = StreamEnd(finish_reason=reason, usage=self._usage(0))
            return
        self.end = StreamEnd(
            finish_reason=reason,
            usage=self._usage(max(self.completion_tokens, estimate_tokens("".join(self.sent)))),
        )

    def read(self, sse: SseEvent) -> str | ToolCallDelta | StreamReasoning | StreamStart | None:
        """Take in one event; the text, thinking or piece of a tool call it adds, or the
        prompt's count at the start, if any."""
        data = decode_json(self.provider, sse.data, halves=True)
        kind = data.get("type", sse.event)
        if kind == "content_block_delta":
            delta = obj(data.get("delta"))
            text = delta.get("text")
            if delta.get("type") == "text_delta" and isinstance(text, str) and text:
                return None if self.formatted else text
            thought = delta.get("thinking")
            if delta.get("type") == "thinking_delta" and isinstance(thought, str) and thought:
                # (a thinking block's signature_delta, and redacted_thinking blocks, which
                # hold nothing readable, are not shown)
                return StreamReasoning(text=thought)
            if delta.get("type") == "input_json_delta":
                partial = delta.get("partial_json")
                if self._is_format_block(data.get("index")):
                    self.format_written |= bool(partial)
                    return partial if isinstance(partial, str) and partial else None
                if data.get("index") in self.ignored:
                    return None
                return self._arguments(data.get("index"), partial)
        elif kind == "content_block_start":
            return self._start(data.get("index"), obj(data.get("content_block")))
        elif kind == "content_block_stop":
            block_index = data.get("index")
            if self._is_format_block(block_index) and not self.format_written:
                self.format_written = True
                return "{}"  # no input at all: the empty object
            tool = self.blocks.get(block_index) if isinstance(block_index, int) else None
            if tool is not None and not tool[1]:  # no input at all: the arguments are {}
                tool[1] = 1
                return ToolCallDelta(index=tool[0], arguments="{}")
        elif kind == "message_start":
            self._count(obj(obj(data.get("message")).get("usage")))
            return StreamStart(usage=self._usage(self.completion_tokens))
        elif kind == "message_delta":
            # Counts here are cumulative; newer API versions repeat the input count.
            self._count(obj(data.get("usage")))
            said = reason_of(obj(data.get("delta")).get("stop_reason"))
            self.stop_reason = said or self.stop_reason
            if said:  # the stop reason and final counts: nothing with content follows
                self.finish()
        elif kind == "message_stop":
            self.finish()
        elif kind == "error":
            raise stream_error(self.provider, data, self.secrets)
        # ping, blocks' stop, signatures and event types added later carry no text
        return None

    def _start(
        self, block_index: object, block: dict[str, Any]
    ) -> str | ToolCallDelta | StreamReasoning | None:
        """A content block's start, with its first piece when it carries its content."""
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return text if isinstance(text, str) and text and not self.formatted else None
        if kind == "thinking":
            thought = block.get("thinking")
            return StreamReasoning(text=thought) if isinstance(thought, str) and thought else None
        if kind != "tool_use":
            return None
        given = block.get("input")
        arguments = msgspec.json.encode(given).decode() if isinstance(given, dict) and given else ""
        if self.formatted and block.get("name") == FORMAT_TOOL:
            if not isinstance(block_index, int):
                return None
            if self.format_block is not None:  # a second answer in the format: the first one
                self.ignored.add(block_index)  # is the reply
                return None
            self.format_block = block_index
            self.format_written = bool(arguments)
            return arguments or None
        return self._tool_call(block_index, block, arguments)

    def _count(self, usage: dict[str, Any]) -> None:
        """Take in a ``usage`` object's counts, each on its own (those it leaves out, null or
        at 0 are kept: a ``message_delta`` may repeat some and not others). The prompt's
        tokens are reported in three parts: ``input_tokens`` (after the last cache
        breakpoint), ``cache_creation_input_tokens`` (written to the prompt cache) and
        ``cache_read_input_tokens`` (read from it); the prompt is all three. Of the writes,
        ``cache_creation.ephemeral_1h_input_tokens`` were to the 1-hour cache (priced apart)."""
        self.input_tokens = _count(usage.get("input_tokens")) or self.input_tokens
        self.cache_read = _count(usage.get("cache_read_input_tokens")) or self.cache_read
        self.cache_write = _count(usage.get("cache_creation_input_tokens")) or self.cache_write
        self.completion_tokens = _count(usage.get("output_tokens")) or self.completion_tokens
        creation = usage.get("cache_creation")
        if isinstance(creation, dict):
            hour = _count(creation.get("ephemeral_1h_input_tokens"))
            self.cache_write_1h = hour or self.cache_write_1h

    def _usage(self, completion_tokens: int) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.input_tokens + self.cache_read + self.cache_write,
            completion_tokens=completion_tokens,
            cached_prompt_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
            cache_write_1h_tokens=min(self.cache_write_1h, self.cache_write),
        )

    def _is_format_block(self, block_index: object) -> bool:
        return self.format_block is not None and block_index == self.format_block

    def _tool_call(
        self, block_index: object, block: dict[str, Any], arguments: str = ""
    ) -> ToolCallDelta | None:
        """A tool call's start, with ``arguments`` (its whole input) when its block began
        with them."""
        call_id, name = block.get("id"), block.get("name")
        if not isinstance(block_index, int) or not isinstance(name, str):
            return None
        # tool calls are counted apart from text blocks, from 0; [index, arguments sent]
        tool = [len(self.blocks), int(bool(arguments))]
        self.blocks[block_index] = tool
        return ToolCallDelta(
            index=tool[0], id=call_id if isinstance(call_id, str) else None, name=name,
            arguments=arguments,
        )  # fmt: skip

    def _arguments(self, block_index: object, partial: object) -> ToolCallDelta | None:
        tool = self.blocks.get(block_index) if isinstance(block_index, int) else None
        if tool is None or not isinstance(partial, str) or not partial:
            return None
        tool[1] = 1
        return ToolCallDelta(index=tool[0], arguments=partial)


def _written(read: str | ToolCallDelta | StreamReasoning | StreamStart | None) -> int:
    """Characters of what one event added: text, thinking or a tool call's arguments."""
    if isinstance(read, str):
        return len(read)
    if isinstance(read, ToolCallDelta):
        return len(read.arguments)
    return len(read.text) if isinstance(read, StreamReasoning) else 0
