"""A streaming chat-completion provider (OpenAI, Anthropic, xAI, OpenAI-compatible servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from whalli.domain.model.base import Value
from whalli.domain.model.chats import GenerationParams, TokenUsage

# PromptMessage lives in the domain (the prompt cache key hashes it); re-exported for adapters.
from whalli.domain.model.chats import PromptMessage as PromptMessage


class CompletionRequest(Value, frozen=True, kw_only=True):
    model: str  # the provider's own model name
    messages: tuple[PromptMessage, ...]
    params: GenerationParams = GenerationParams()


class StreamDelta(Value, frozen=True, kw_only=True):
    """A piece of generated text."""

    text: str


class StreamEnd(Value, frozen=True, kw_only=True):
    """The provider finished; usage as the provider reported it."""

    finish_reason: str
    usage: TokenUsage


StreamEvent = StreamDelta | StreamEnd


class ChatModel(Protocol):
    provider: str

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Yield deltas, then exactly one ``StreamEnd``.

        Raises ``ProviderError`` subclasses (with ``retryable`` set) on failure; closing the
        iterator closes the upstream request.
        """
        ...
