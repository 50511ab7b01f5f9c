"""Anthropic Messages API streaming over httpx.

The stream is message_start (input tokens), content blocks (content_block_start, text deltas,
content_block_stop), message_delta (stop reason, output tokens so far), then message_stop; ping
events may come at any time and an error event may replace the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import msgspec

from whalli.adapters.ai._http import decode_json, obj, sse_post, stream_error
from whalli.adapters.ai._sse import SseEvent
from whalli.adapters.ai._stops import LocalStops, split_stops
from whalli.adapters.ai._streaming import Sleep, StreamPolicy, stream_cut, stream_with_retries
from whalli.domain.model.chats import MessageRole, TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.domain.services.chat.context import estimate_tokens
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
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
    ) -> None:
        self.provider = "anthropic"
        self._http = http
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
        self._default_max_tokens = default_max_tokens
        self._policy = policy or StreamPolicy()
        self._sleep = sleep

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        body = msgspec.json.encode(self._body(request))
        _, local = split_stops(request.params.stop)
        return stream_with_retries(
            lambda: self._attempt(body, local),
            provider=self.provider,
            policy=self._policy,
            sleep=self._sleep,
        )

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == MessageRole.SYSTEM)
        # The API takes the system prompt apart, refuses a turn without text (an OpenAI client's
        # assistant turn with null content) and wants user and assistant turns to alternate:
        # empty turns are left out, and consecutive turns of one role are joined.
        turns: list[dict[str, str]] = []
        for message in request.messages:
            if message.role == MessageRole.SYSTEM or not message.content.strip():
                continue
            if turns and turns[-1]["role"] == message.role:
                turns[-1]["content"] += "\n\n" + message.content
            else:
                turns.append({"role": str(message.role), "content": message.content})
        params = request.params
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": params.max_tokens or self._default_max_tokens,
            "messages": turns,
            "stream": True,
        }
        if system:
            body["system"] = system
        if params.temperature is not None:
            body["temperature"] = min(params.temperature, 1.0)  # Anthropic's range is 0..1
        if params.top_p is not None:
            body["top_p"] = params.top_p
        sent, _ = split_stops(params.stop)
        if sent:  # whitespace-only ones are refused by the API: they are applied in _attempt
            body["stop_sequences"] = sent
        # seed, presence_penalty and frequency_penalty: the Messages API has no such thing
        return body

    async def _attempt(self, body: bytes, local: list[str]) -> AsyncGenerator[StreamEvent, None]:
        answer = _Answer(self.provider)
        stops = LocalStops(local) if local else None
        events = sse_post(
            self._http,
            self._url,
            provider=self.provider,
            headers=self._headers,
            body=body,
            policy=self._policy,
        )
        async with aclosing(events):
            try:
                async for sse in events:
                    if answer.end is not None:
                        continue  # read the body to its end so the connection can be reused
                    text = answer.read(sse)
                    del sse  # a held reply waits for its next event here: keep nothing of this one
                    stopped = False
                    if text and stops is not None:
                        text, stopped = stops.feed(text)
                        answer.sent.append(text)
                    if text:
                        yield StreamDelta(text=text)
                    if stopped:  # closing the response ends the generation upstream
                        answer.stop_here()
                        break
            except ProviderError:
                if answer.end is None:
                    raise  # a failure after message_stop does not spoil a complete answer
        if answer.end is None:
            raise stream_cut(self.provider)
        rest = stops.flush() if stops is not None else ""
        if rest:
            yield StreamDelta(text=rest)
        yield answer.end


class _Answer:
    """What one attempt's events said so far: its counts, its stop reason, its end."""

    __slots__ = ("completion_tokens", "end", "prompt_tokens", "provider", "sent", "stop_reason")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.prompt_tokens = self.completion_tokens = 0
        self.stop_reason: str | None = None
        self.end: StreamEnd | None = None
        self.sent: list[str] = []  # the text passed on (kept only while local stops apply)

    def stop_here(self) -> None:
        """End at a stop sequence applied locally. The output count comes only at the end of
        the stream, so it is estimated from the text (``estimate_tokens``)."""
        self.end = StreamEnd(
            finish_reason="stop_sequence",
            usage=TokenUsage(
                prompt_tokens=self.prompt_tokens,
                completion_tokens=max(self.completion_tokens, estimate_tokens("".join(self.sent))),
            ),
        )

    def read(self, sse: SseEvent) -> str | None:
        """Take in one event; the text it adds, if any."""
        data = decode_json(self.provider, sse.data)
        kind = data.get("type", sse.event)
        if kind == "content_block_delta":
            delta = obj(data.get("delta"))
            text = delta.get("text")
            if delta.get("type") == "text_delta" and isinstance(text, str) and text:
                return text
        elif kind == "message_start":
            usage = obj(obj(data.get("message")).get("usage"))
            self.prompt_tokens = _input_tokens(usage) or self.prompt_tokens
            self.completion_tokens = _count(usage.get("output_tokens")) or self.completion_tokens
        elif kind == "message_delta":
            usage = obj(data.get("usage"))
            # Counts here are cumulative; newer API versions repeat the input count.
            self.prompt_tokens = _input_tokens(usage) or self.prompt_tokens
            self.completion_tokens = _count(usage.get("output_tokens")) or self.completion_tokens
            self.stop_reason = obj(data.get("delta")).get("stop_reason") or self.stop_reason
        elif kind == "message_stop":
            self.end = StreamEnd(
                finish_reason=str(self.stop_reason or "unknown"),
                usage=TokenUsage(
                    prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens
                ),
            )
        elif kind == "error":
            raise stream_error(self.provider, data)
        # ping, content_block_start/stop and event types added later carry no text
        return None


def _input_tokens(usage: dict[str, Any]) -> int:
    # Prompt-cache reads and writes are billed input too, reported apart from input_tokens.
    return sum(
        _count(usage.get(key))
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0
