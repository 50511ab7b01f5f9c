"""OpenAI Chat Completions streaming over httpx: OpenAI, xAI and OpenAI-compatible servers
(Ollama, vLLM, llama.cpp server, OpenRouter), which speak the same wire format."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

import httpx
import msgspec

from whalli.adapters.ai._http import decode_json, obj, sse_post, stream_error
from whalli.adapters.ai._streaming import Sleep, StreamPolicy, stream_cut, stream_with_retries
from whalli.domain.model.chats import TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.ports.chat_model import (
    ChatModel,
    CompletionRequest,
    StreamDelta,
    StreamEnd,
    StreamEvent,
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
        self._policy = policy or StreamPolicy()
        self._sleep = sleep

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        body = msgspec.json.encode(self._body(request))
        return stream_with_retries(
            lambda: self._attempt(body),
            provider=self.provider,
            policy=self._policy,
            sleep=self._sleep,
        )

    def _body(self, request: CompletionRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": str(m.role), "content": m.content} for m in request.messages],
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
        return body

    async def _attempt(self, body: bytes) -> AsyncGenerator[StreamEvent, None]:
        finish_reason: str | None = None
        usage = TokenUsage()
        end: StreamEnd | None = None
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
                    if end is not None:
                        continue  # read the body to its end so the connection can be reused
                    if sse.data.strip() == "[DONE]":
                        end = StreamEnd(finish_reason=finish_reason or "unknown", usage=usage)
                        continue
                    texts, finish, chunk_usage = self._read(sse.data)
                    del sse  # a held reply waits for its next event here: keep nothing of this one
                    finish_reason, usage = finish or finish_reason, chunk_usage or usage
                    for text in texts:
                        yield StreamDelta(text=text)
            except ProviderError:
                if end is None:
                    raise  # a failure after [DONE] does not spoil a complete answer
        if end is None:
            raise stream_cut(self.provider)
        yield end

    def _read(self, data: str) -> tuple[list[str], str | None, TokenUsage | None]:
        """One chunk's text deltas (of the first choice), finish reason and usage."""
        chunk = decode_json(self.provider, data)
        if chunk.get("error") is not None:
            raise stream_error(self.provider, chunk)
        texts: list[str] = []
        finish_reason: str | None = None
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            text = obj(choice.get("delta")).get("content")
            if isinstance(text, str) and text:
                texts.append(text)
            if choice.get("finish_reason"):
                finish_reason = str(choice["finish_reason"])
        return texts, finish_reason, _usage(chunk.get("usage"))


def _usage(raw: object) -> TokenUsage | None:
    if not isinstance(raw, dict):
        return None
    return TokenUsage(
        prompt_tokens=_count(raw.get("prompt_tokens")),
        completion_tokens=_count(raw.get("completion_tokens")),
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0
