"""The request a model of the catalog is sent, with what its catalog entry says of it."""

from __future__ import annotations

import hashlib
from uuid import UUID

from whalli.domain.model.catalog import ModelSpec
from whalli.domain.model.chats import GenerationParams, PromptMessage
from whalli.domain.model.response_format import ResponseFormat
from whalli.domain.model.tools import Tools
from whalli.domain.services.chat.context import estimate_prompt_tokens
from whalli.ports.chat_model import CompletionRequest

# The least reply cap a request sent whole is sent by default (``untrimmed_reply_cap``): the
# default before the catalog's, which such a request fit when it fit at all.
MIN_UNTRIMMED_REPLY_CAP = 1_024


def completion_request(
    spec: ModelSpec,
    messages: tuple[PromptMessage, ...],
    params: GenerationParams,
    *,
    tools: Tools | None = None,
    response_format: ResponseFormat | None = None,
    conversation: str | None = None,
    trimmed: bool = True,
) -> CompletionRequest:
    """``messages`` for ``spec`` (its provider's name for it, whether it reasons, its output
    cap, whether it enforces schemas, thinks adaptively and takes a prefill), asked with
    ``params``: those it refuses left out, and a refused ``stop`` applied by the adapter;
    ``conversation`` names what the request continues (``conversation_key``). ``trimmed``
    False: ``messages`` were not trimmed to keep the default reply cap free (``/v1`` sends
    the caller's conversation whole), which is then what they leave (``untrimmed_reply_cap``)."""
    sent, local_stops = spec.sent(params)
    default = spec.default_max_tokens if trimmed else untrimmed_reply_cap(spec, messages)
    return CompletionRequest(
        model=spec.upstream, messages=messages, params=sent,
        tools=tools, response_format=response_format,
        reasons=spec.thinks_first, max_output_tokens=spec.max_output_tokens,
        default_max_tokens=default,
        strict_outputs=spec.strict_outputs, adaptive_thinking=spec.adaptive_thinking,
        prefill=spec.prefill, local_stops=local_stops, conversation=conversation,
    )  # fmt: skip


def untrimmed_reply_cap(spec: ModelSpec, messages: tuple[PromptMessage, ...]) -> int | None:
    """The reply cap sent by default with ``messages`` not trimmed for it (``None``: none is
    sent, as ``ModelSpec.default_max_tokens``): what ``spec``'s window leaves after their
    estimate (``estimate_prompt_tokens``), at most ``default_max_tokens`` and at least
    ``MIN_UNTRIMMED_REPLY_CAP`` (within ``default_max_tokens``), so that a conversation that
    fit with the former default of 1,024 still does, as OpenAI's unset ``max_tokens`` means."""
    cap = spec.default_max_tokens
    if cap is None:
        return None
    left = spec.context_window - estimate_prompt_tokens(messages)
    return min(cap, max(MIN_UNTRIMMED_REPLY_CAP, left))


def conversation_key(kind: str, owner: UUID) -> str:
    """The key a provider's prompt cache may route a conversation's requests by (OpenAI's
    ``prompt_cache_key``): the same for every request of one chat (``kind`` ``chat``) or of
    one /v1 caller (``v1``), a digest of it that tells the provider nothing of whose it is."""
    return hashlib.sha256(f"whalli:{kind}:{owner}".encode()).hexdigest()[:32]
