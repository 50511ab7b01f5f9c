"""Anthropic Messages API streaming over httpx.

The stream is message_start (input tokens), content blocks (content_block_start, text deltas,
content_block_stop), message_delta (stop reason, output tokens so far), then message_stop; ping
events may come at any time and an error event may replace the rest. A tool call is a content
block of type ``tool_use`` (its id and name at its start), its input streamed as pieces of JSON
(``input_json_delta``); a reply that called tools stops with ``tool_use``.
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
from whalli.domain.model.chats import MessageRole, PromptMessage, TokenUsage
from whalli.domain.model.errors import InvalidInput, ProviderError
from whalli.domain.model.tools import ToolCall, ToolChoiceMode, Tools
from whalli.domain.services.chat.context import estimate_tokens
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
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
        if request.tools is None and any(
            m.tool_calls or m.role is MessageRole.TOOL for m in request.messages
        ):  # the API refuses tool_use and tool_result blocks in a request without tools
            raise InvalidInput(
                "Anthropic models read tool calls and results only in a request that offers "
                "the tools: send them again in tools.",
                field="tools",
            )
        system = "\n\n".join(m.content for m in request.messages if m.role == MessageRole.SYSTEM)
        params = request.params
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": params.max_tokens or self._default_max_tokens,
            "messages": _turns(request.messages),
            "stream": True,
        }
        if request.tools is not None:
            body.update(_tools(request.tools))
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
                    if isinstance(text, ToolCallDelta):
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

    __slots__ = (
        "blocks",
        "completion_tokens",
        "end",
        "prompt_tokens",
        "provider",
        "sent",
        "stop_reason",
    )

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.prompt_tokens = self.completion_tokens = 0
        self.stop_reason: str | None = None
        self.end: StreamEnd | None = None
        self.sent: list[str] = []  # the text passed on (kept only while local stops apply)
        # tool_use blocks by their content block index: [tool call index, arguments sent]
        self.blocks: dict[int, list[int]] = {}

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

    def read(self, sse: SseEvent) -> str | ToolCallDelta | None:
        """Take in one event; the text or the piece of a tool call it adds, if any."""
        data = decode_json(self.provider, sse.data)
        kind = data.get("type", sse.event)
        if kind == "content_block_delta":
            delta = obj(data.get("delta"))
            text = delta.get("text")
            if delta.get("type") == "text_delta" and isinstance(text, str) and text:
                return text
            if delta.get("type") == "input_json_delta":
                return self._arguments(data.get("index"), delta.get("partial_json"))
        elif kind == "content_block_start":
            block = obj(data.get("content_block"))
            if block.get("type") == "tool_use":
                return self._tool_call(data.get("index"), block)
        elif kind == "content_block_stop":
            block_index = data.get("index")
            tool = self.blocks.get(block_index) if isinstance(block_index, int) else None
            if tool is not None and not tool[1]:  # no input at all: the arguments are {}
                tool[1] = 1
                return ToolCallDelta(index=tool[0], arguments="{}")
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
            reason = str(self.stop_reason or "unknown")
            self.end = StreamEnd(
                finish_reason="tool_calls" if reason == "tool_use" else reason,
                usage=TokenUsage(
                    prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens
                ),
            )
        elif kind == "error":
            raise stream_error(self.provider, data)
        # ping, text blocks' start and stop and event types added later carry no text
        return None

    def _tool_call(self, block_index: object, block: dict[str, Any]) -> ToolCallDelta | None:
        call_id, name = block.get("id"), block.get("name")
        if not isinstance(block_index, int) or not isinstance(name, str):
            return None
        tool = [len(self.blocks), 0]  # tool calls are counted apart from text blocks, from 0
        self.blocks[block_index] = tool
        return ToolCallDelta(
            index=tool[0], id=call_id if isinstance(call_id, str) else None, name=name
        )

    def _arguments(self, block_index: object, partial: object) -> ToolCallDelta | None:
        tool = self.blocks.get(block_index) if isinstance(block_index, int) else None
        if tool is None or not isinstance(partial, str) or not partial:
            return None
        tool[1] = 1
        return ToolCallDelta(index=tool[0], arguments=partial)


def _turns(messages: tuple[PromptMessage, ...]) -> list[dict[str, Any]]:
    """The conversation as the API takes it. It takes the system prompt apart, refuses a turn
    without content (an OpenAI client's assistant turn with null content) and wants user and
    assistant turns to alternate: empty turns are left out and consecutive turns of one role
    are joined; an assistant's tool calls are ``tool_use`` blocks, and tool results
    ``tool_result`` blocks of the user turn that follows them."""
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role == MessageRole.SYSTEM:
            continue
        content: str | list[dict[str, Any]]
        role = "user" if message.role is MessageRole.TOOL else str(message.role)
        if message.role is MessageRole.TOOL:
            content = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content,
                }
            ]
        elif message.tool_calls:
            content = [{"type": "text", "text": message.content}] if message.content.strip() else []
            content += [_tool_use(index, n, call) for n, call in enumerate(message.tool_calls)]
        elif message.content.strip():
            content = message.content
        else:
            continue
        if not turns or turns[-1]["role"] != role:
            turns.append({"role": role, "content": content})
            continue
        previous = turns[-1]["content"]
        if isinstance(previous, str) and isinstance(content, str):
            turns[-1]["content"] = previous + "\n\n" + content
        else:
            turns[-1]["content"] = _blocks(previous) + _blocks(content)
    return turns


def _blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def _tool_use(index: int, number: int, call: ToolCall) -> dict[str, Any]:
    try:
        arguments = msgspec.json.decode(call.arguments) if call.arguments.strip() else {}
    except msgspec.DecodeError:
        arguments = None
    if not isinstance(arguments, dict):  # Anthropic's input is a JSON object
        field = f"messages[{index}].tool_calls[{number}].function.arguments"
        raise InvalidInput(f"{field} must be a JSON object (for Anthropic).", field=field)
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}


def _tools(tools: Tools) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` as the Messages API takes them."""
    functions = []
    for spec in tools.specs:
        function: dict[str, Any] = {"name": spec.name}
        if spec.description is not None:
            function["description"] = spec.description
        # input_schema is required: a function without parameters takes an empty object
        function["input_schema"] = spec.parameters or {"type": "object", "properties": {}}
        functions.append(function)
    body: dict[str, Any] = {"tools": functions}
    choice: dict[str, Any] | None = None
    mode = tools.choice.mode if tools.choice is not None else None
    if mode is ToolChoiceMode.FUNCTION:
        assert tools.choice is not None
        choice = {"type": "tool", "name": tools.choice.name}
    elif mode is not None:
        choice = {"type": _CHOICES[mode]}
    if tools.parallel is False and mode is not ToolChoiceMode.NONE:
        choice = (choice or {"type": "auto"}) | {"disable_parallel_tool_use": True}
    if choice is not None:
        body["tool_choice"] = choice
    return body


_CHOICES = {
    ToolChoiceMode.AUTO: "auto",
    ToolChoiceMode.REQUIRED: "any",
    ToolChoiceMode.NONE: "none",
}


def _input_tokens(usage: dict[str, Any]) -> int:
    # Prompt-cache reads and writes are billed input too, reported apart from input_tokens.
    return sum(
        _count(usage.get(key))
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0
