"""The request a model of the catalog is sent, with what its catalog entry says of it."""

from __future__ import annotations

import hashlib
from uuid import UUID

from whalli.domain.model.catalog import ModelSpec
from whalli.domain.model.chats import GenerationParams, PromptMessage
from whalli.domain.model.response_format import ResponseFormat
from whalli.domain.model.tools import Tools
from whalli.ports.chat_model import CompletionRequest


def completion_request(
    spec: ModelSpec,
    messages: tuple[PromptMessage, ...],
    params: GenerationParams,
    *,
    tools: Tools | None = None,
    response_format: ResponseFormat | None = None,
    conversation: str | None = None,
) -> CompletionRequest:
    """``messages`` for ``spec`` (its provider's name for it, whether it reasons, its output
    cap, whether it enforces schemas, thinks adaptively and takes a prefill), asked with
    ``params``: those it refuses left out, and a refused ``stop`` applied by the adapter;
    ``conversation`` names what the request continues (``conversation_key``)."""
    sent, local_stops = spec.sent(params)
    return CompletionRequest(
        model=spec.upstream, messages=messages, params=sent,
        tools=tools, response_format=response_format,
        reasons=spec.thinks_first, max_output_tokens=spec.max_output_tokens,
        default_max_tokens=spec.default_max_tokens,
        strict_outputs=spec.strict_outputs, adaptive_thinking=spec.adaptive_thinking,
        prefill=spec.prefill, local_stops=local_stops, conversation=conversation,
    )  # fmt: skip


def conversation_key(kind: str, owner: UUID) -> str:
    """The key a provider's prompt cache may route a conversation's requests by (OpenAI's
    ``prompt_cache_key``): the same for every request of one chat (``kind`` ``chat``) or of
    one /v1 caller (``v1``), a digest of it that tells the provider nothing of whose it is."""
    return hashlib.sha256(f"whalli:{kind}:{owner}".encode()).hexdigest()[:32]
