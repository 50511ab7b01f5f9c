"""The request a model of the catalog is sent, with what its catalog entry says of it."""

from __future__ import annotations

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
) -> CompletionRequest:
    """``messages`` for ``spec`` (its provider's name for it, whether it reasons, its output
    cap, whether it enforces schemas, thinks adaptively and takes a prefill), asked with
    ``params``: those it refuses left out, and a refused ``stop`` applied by the adapter."""
    sent, local_stops = spec.sent(params)
    return CompletionRequest(
        model=spec.upstream, messages=messages, params=sent,
        tools=tools, response_format=response_format,
        reasons=spec.thinks_first, max_output_tokens=spec.max_output_tokens,
        strict_outputs=spec.strict_outputs, adaptive_thinking=spec.adaptive_thinking,
        prefill=spec.prefill, local_stops=local_stops,
    )  # fmt: skip
