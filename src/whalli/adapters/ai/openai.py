"""OpenAI Chat Completions streaming over httpx: OpenAI, xAI and OpenAI-compatible servers
(Ollama, vLLM, llama.cpp server, OpenRouter), which speak the same wire format."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

import httpx
import msgspec

from whalli.adapters.ai._http import decode_json, obj, sse_post, stream_error, whole_limit
from whalli.adapters.ai._stops import LocalStops
from whalli.adapters.ai._streaming import (
    Sleep,
    StreamPolicy,
    is_cut,
    output_cap_chars,
    provider_error,
    reason_of,
    refused,
    stream_cut,
    stream_with_retries,
)
from whalli.adapters.ai.image_types import check_image_types
from whalli.domain.model.chats import MessageRole, PromptMessage, TokenUsage, reported_count
from whalli.domain.model.errors import ProviderError
from whalli.domain.model.images import ImagePart
from whalli.domain.model.tools import ToolChoiceMode, Tools
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamReasoning,
    StreamRefusal,
    ToolCallDelta,
)

OpenAIFlavour = Literal["openai", "xai", "openai-compatible"]


# Sent as they are when set: every OpenAI-compatible server reads these by these names.
_SAMPLING = ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty")


class OpenAIChatModel(ChatModel):
    """``base_url`` ends with the API version (``https://api.openai.com/v1``,
    ``https://api.x.ai/v1``, ``http://localhost:11434/v1``); an empty ``api_key`` sends no
    Authorization header (local servers need none)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str = "",
        provider: OpenAIFlavour = "openai",
        policy: StreamPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self._http = http
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._secrets = (api_key,) if api_key else ()  # never repeated in an error's message
        self._policy = policy or StreamPolicy()
        self._sleep = sleep

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        try:
            check_image_types(request.messages, self.provider)
        except ProviderError as e:  # an image the API would refuse: not sent
            return refused(e)
        body = msgspec.json.encode(self._body(request))
        stops, cap = request.local_stops, output_cap_chars(request)
        return stream_with_retries(
            lambda: self._attempt(body, stops, cap),
            provider=self.provider,
            policy=self._policy.to_answer(request),
            sleep=self._sleep,
        )

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
            # Without it OpenAI streams no usage at all, and the reply would be recorded as free.
            "stream_options": {"include_usage": True},
        }
        params = request.params
        if params.temperature is not None:
            body["temperature"] = params.temperature
        if params.max_tokens is not None:
            # OpenAI deprecated max_tokens (its reasoning models refuse it); compatible servers
            # and xAI still expect it.
            key = "max_completion_tokens" if self.provider == "openai" else "max_tokens"
            body[key] = params.max_tokens
        for name in _SAMPLING:
            value = getattr(params, name)
            if value is not None:
                body[name] = list(value) if isinstance(value, tuple) else value
        if params.reasoning_effort is not None:
            body["reasoning_effort"] = str(params.reasoning_effort)
        if params.verbosity is not None:  # (only asked of a model that takes it)
            body["verbosity"] = str(params.verbosity)
        if request.tools is not None:
            body.update(_tools(request.tools))
        if request.response_format is not None:
            body["response_format"] = request.response_format.as_sent()
        if request.conversation is not None and self.provider == "openai":
            # OpenAI's own: requests with one key go where its prompt cache holds their prefix
            # (other servers may refuse a field they do not know)
            body["prompt_cache_key"] = request.conversation
        return body

    async def _attempt(
        self, body: bytes, local_stops: tuple[str, ...], cap_chars: int
    ) -> AsyncGenerator[StreamEvent, None]:
        """One request. The answer ends at ``[DONE]``, or at the usage chunk that follows the
        finish reason (by definition the last chunk before ``[DONE]``): its end is passed on at
        once and nothing more is read (a connection a proxy keeps open after it, silent, is
        closed, not waited on). A ``finish_reason`` of ``error`` (OpenRouter's for a
        generation that failed) fails the answer after its text so far, as an ``error`` chunk
        does. A server that ignored ``stream: true`` and answered one ``chat.completion`` is
        read as its stream (``_as_chunk``). With ``local_stops`` (sequences the model
        refuses), the text is cut where the first of them begins: the answer ends there with
        ``stop``, its usage not reported (the request is closed before its usage comes; the
        caller estimates it)."""
        finish_reason: str | None = None
        usage, counted = TokenUsage(), False
        left = cap_chars  # characters the model may still write (``output_cap_chars``)
        calls = _CallPieces()  # the tool calls begun, across the stream's chunks
        stops = LocalStops(local_stops) if local_stops else None
        events = sse_post(
            self._http,
            self._url,
            provider=self.provider,
            headers=self._headers,
            body=body,
            policy=self._policy,
            whole=_as_chunk,
            max_whole_bytes=whole_limit(cap_chars),
        )
        try:
            async with aclosing(events):
                async for sse in events:
                    if sse.data.strip() == "[DONE]":
                        break
                    texts, pieces, finish, chunk_usage = self._read(sse.data)
                    left -= _written(texts, pieces)
                    if left < 0:  # past what the model may write: ended here, as by its length
                        yield StreamEnd(finish_reason="length", usage=usage)
                        return
                    del sse  # a held reply waits for its next event here: keep nothing of this one
                    # only the usage, after the finish reason: the answer is complete
                    ended = finish_reason is not None and chunk_usage is not None
                    ended = ended and finish is None and not texts and pieces is None
                    finish_reason, usage = finish or finish_reason, chunk_usage or usage
                    counted = counted or chunk_usage is not None
                    if ended:
                        break
                    for text in texts:
                        if stops is not None and type(text) is StreamDelta:  # (not a refusal)
                            cut, stopped = stops.feed(text.text)
                            if cut:
                                yield StreamDelta(text=cut)
                            if stopped:  # closing the response ends the generation upstream
                                # its usage, if it came (a whole answer); else the caller estimates
                                yield StreamEnd(finish_reason="stop", usage=usage)
                                return
                            continue
                        yield text
                    if pieces is not None:
                        held = stops.flush() if stops is not None else ""
                        if held:  # the model moved on to its calls: that text was no stop's start
                            yield StreamDelta(text=held)
                        for piece in pieces:
                            yield calls.delta(piece)
                    if finish == "error":
                        raise _failed_generation(self.provider)
                else:
                    raise stream_cut(self.provider)
        except ProviderError as e:
            # Cut (dropped, or closed without [DONE]) after the finish reason and then the
            # usage, the last chunk before [DONE]: nothing of the reply is missing.
            if not is_cut(e) or finish_reason is None or not counted:
                raise
        rest = stops.flush() if stops is not None else ""
        if rest:
            yield StreamDelta(text=rest)
        yield StreamEnd(finish_reason=finish_reason or "unknown", usage=usage)

    def _read(
        self, data: str
    ) -> tuple[
        list[StreamDelta | StreamReasoning], list[dict[str, Any]] | None, str | None,
        TokenUsage | None,
    ]:  # fmt: skip
        """One chunk's reasoning and text deltas and tool-call pieces (of the first choice),
        finish reason and usage. Reasoning is ``reasoning_content`` (DeepSeek, xAI, vLLM) or
        ``reasoning`` (OpenRouter, Ollama), a string; it comes before the text of a delta."""
        chunk = decode_json(self.provider, data, halves=True)
        if chunk.get("error") is not None:
            raise stream_error(self.provider, chunk, self._secrets)
        texts: list[StreamDelta | StreamReasoning] = []
        calls: list[dict[str, Any]] | None = None
        finish_reason: str | None = None
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = obj(choice.get("delta"))
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str) and thought:
                texts.append(StreamReasoning(text=thought))
            text = delta.get("content")
            if isinstance(text, str) and text:
                texts.append(StreamDelta(text=text))
            declined = delta.get("refusal")  # a structured output refused: OpenAI's words
            if isinstance(declined, str) and declined:
                texts.append(StreamRefusal(text=declined))
            pieces = delta.get("tool_calls")
            if isinstance(pieces, list) and pieces:
                calls = [obj(piece) for piece in pieces]
            if choice.get("finish_reason"):
                finish_reason = reason_of(choice["finish_reason"])
        return texts, calls, finish_reason, _usage(chunk.get("usage"))


def _failed_generation(provider: str) -> ProviderError:
    """``finish_reason: "error"`` without an ``error`` object (OpenRouter's normalised reason
    for a generation that failed upstream) fails the answer as an ``error`` chunk without a
    transient code does (``stream_error``): not retried; before any text, the caller may fall
    back to another model; after it, the text so far is kept."""
    return provider_error(
        f"The {provider} provider reported that its generation failed (finish reason 'error').",
        provider=provider,
        kind="upstream_error",
        retryable=False,
    )


def _as_chunk(document: dict[str, Any]) -> list[str]:
    """A whole ``chat.completion`` (a server that ignored ``stream: true``) as the ``data`` of
    the stream that would have said the same: one chunk with its message as the delta, its
    finish reason and usage, then ``[DONE]``. Anything else (an ``error`` object) goes as it
    is, read as a chunk would be."""
    choices = document.get("choices")
    if not isinstance(choices, list):
        return [msgspec.json.encode(document).decode()]
    chunk_choices = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = dict(obj(choice.get("message")))
        if isinstance(delta.get("tool_calls"), list):  # numbered as a stream numbers them
            delta["tool_calls"] = [
                {"index": i, **obj(call)} for i, call in enumerate(delta["tool_calls"])
            ]
        chunk_choices.append({**choice, "delta": delta})
    chunk = {**document, "choices": chunk_choices}
    return [msgspec.json.encode(chunk).decode(), "[DONE]"]


def _message(message: PromptMessage) -> dict[str, Any]:
    sent = _turn(message)
    if message.name is not None and message.role is not MessageRole.TOOL:
        sent["name"] = message.name  # who spoke (a tool's turn is named by its call)
    return sent


def _turn(message: PromptMessage) -> dict[str, Any]:
    if message.role is MessageRole.TOOL:
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.parts:  # images: the parts as the client sent them, in order
        return {"role": str(message.role), "content": [_part(p) for p in message.parts]}
    if not message.tool_calls:
        return {"role": str(message.role), "content": message.content}
    calls = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in message.tool_calls
    ]
    return {"role": "assistant", "content": message.content or None, "tool_calls": calls}


def _part(part: str | ImagePart) -> dict[str, Any]:
    """A content part in OpenAI's shape. The image URL is the provider's to fetch (Whalli
    never fetches it: no request of ours goes to it)."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    image: dict[str, Any] = {"url": part.url}
    if part.detail is not None:
        image["detail"] = str(part.detail)
    return {"type": "image_url", "image_url": image}


def _tools(tools: Tools) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` as the API takes them."""
    functions = []
    for spec in tools.specs:
        function: dict[str, Any] = {"name": spec.name}
        if spec.description is not None:
            function["description"] = spec.description
        if spec.parameters is not None:
            function["parameters"] = spec.parameters
        if spec.strict is not None:
            function["strict"] = spec.strict
        functions.append({"type": "function", "function": function})
    body: dict[str, Any] = {"tools": functions}
    choice = tools.choice
    if choice is not None:
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode is ToolChoiceMode.FUNCTION
            else str(choice.mode)
        )
    if tools.parallel is not None:
        body["parallel_tool_calls"] = tools.parallel
    return body


class _CallPieces:
    """Numbers the pieces of the tool calls of one streamed reply as OpenAI does: a call's
    first piece carries its id (one is made up when the server sends none: a client cannot
    answer a call without one) and its function's name, later pieces only arguments.

    Servers differ: some repeat the id and name on every piece (passed on once, or a client
    joining the pieces would join them too), some send no ``index`` (a piece with a new id, or
    a name for a call that has one, starts a new call; any other continues the last one).
    """

    __slots__ = ("_by_id", "_last", "_started")

    def __init__(self) -> None:
        self._started: set[int] = set()
        self._by_id: dict[str, int] = {}
        self._last: int | None = None

    def delta(self, piece: dict[str, Any]) -> ToolCallDelta:
        function = obj(piece.get("function"))
        raw_index, call_id = piece.get("index"), piece.get("id")
        name, arguments = function.get("name"), function.get("arguments")
        call_id = call_id if isinstance(call_id, str) and call_id else None
        name = name if isinstance(name, str) and name else None
        if isinstance(raw_index, int) and raw_index >= 0:
            index = raw_index
        elif call_id is not None:
            index = self._by_id.get(call_id, len(self._started))
        elif self._last is None or name is not None:
            index = len(self._started)
        else:
            index = self._last
        self._last = index
        arguments = arguments if isinstance(arguments, str) else ""
        if index in self._started:  # a later piece: its arguments only
            return ToolCallDelta(index=index, id=None, name=None, arguments=arguments)
        self._started.add(index)
        call_id = call_id or f"call_{uuid.uuid4().hex[:24]}"
        self._by_id[call_id] = index
        return ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments)


def _usage(raw: object) -> TokenUsage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = (
        obj(raw.get("prompt_tokens_details")),
        obj(raw.get("completion_tokens_details")),
    )
    completion_tokens = reported_count(raw.get("completion_tokens"))
    return TokenUsage(
        prompt_tokens=reported_count(raw.get("prompt_tokens")),
        completion_tokens=completion_tokens,
        cached_prompt_tokens=reported_count(prompt.get("cached_tokens")),
        # of the completion tokens: never more than them (a server's inconsistent report)
        reasoning_tokens=min(reported_count(completion.get("reasoning_tokens")), completion_tokens),
    )


def _written(
    texts: list[StreamDelta | StreamReasoning], pieces: list[dict[str, Any]] | None
) -> int:
    """Characters of a chunk's text, thinking and tool calls' arguments."""
    written = sum(len(t.text) for t in texts)
    for piece in pieces or ():
        arguments = obj(piece.get("function")).get("arguments")
        written += len(arguments) if isinstance(arguments, str) else 0
    return written
