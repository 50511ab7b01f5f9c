"""OpenAI's wire format for /v1, replies: a whole chat completion, its stream chunks, usage and
the model list, in OpenAI's shapes (see ``openai_wire`` for the requests)."""

from __future__ import annotations

from typing import Literal

import msgspec

from whalli.domain.model.chats import TokenUsage
from whalli.domain.model.tools import ToolCall

# The finish reasons OpenAI clients know; providers' own spellings map onto them.
_FINISH_REASONS = {"stop", "length", "content_filter", "tool_calls", "function_call"}
# (model_context_window_exceeded: Claude 4.5 and later, cut where its context window ends)
_LENGTH_REASONS = {"length", "max_tokens", "max_output_tokens", "model_context_window_exceeded"}


def finish_reason(reason: str) -> str:
    if reason in _LENGTH_REASONS:
        return "length"
    if reason == "refusal":  # Anthropic's: the model declined, for safety
        return "content_filter"
    return reason if reason in _FINISH_REASONS else "stop"


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int


class CompletionTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # as OpenAI answers them (0 when the provider said nothing of them)
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails

    @classmethod
    def of(cls, usage: TokenUsage) -> Usage:
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_prompt_tokens),
            completion_tokens_details=CompletionTokensDetails(
                reasoning_tokens=usage.reasoning_tokens
            ),
        )


class FunctionCallOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A whole call (a completion), or in a chunk a piece of one: ``index``, and ``id``,
    ``type`` and ``function.name`` on its first piece only."""

    function: FunctionCallOut
    index: int | None = None
    id: str | None = None
    type: Literal["function"] | None = None


class AssistantMessage(msgspec.Struct, kw_only=True):
    content: str | None
    role: Literal["assistant"] = "assistant"
    refusal: str | None = None  # the model declined to answer as asked (its words)
    tool_calls: list[ToolCallOut] | msgspec.UnsetType = msgspec.UNSET  # only when it made some
    # A reasoning model's thinking, as DeepSeek, xAI and vLLM name it; only when there was some
    reasoning_content: str | msgspec.UnsetType = msgspec.UNSET

    @classmethod
    def of(
        cls, text: str, calls: tuple[ToolCall, ...], reasoning: str = "", refusal: str = ""
    ) -> AssistantMessage:
        """``content`` is null when the message is only tool calls, or only a refusal."""
        thought = reasoning or msgspec.UNSET
        if refusal:
            return cls(content=text or None, refusal=refusal, reasoning_content=thought)
        if not calls:
            return cls(content=text, reasoning_content=thought)
        return cls(
            content=text or None,
            reasoning_content=thought,
            tool_calls=[
                ToolCallOut(
                    id=call.id,
                    type="function",
                    function=FunctionCallOut(name=call.name, arguments=call.arguments),
                )
                for call in calls
            ],
        )


class Choice(msgspec.Struct, kw_only=True):
    message: AssistantMessage
    finish_reason: str
    index: int = 0
    logprobs: None = None


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: None = None


class Delta(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class OpeningDelta(msgspec.Struct, kw_only=True):
    """The first chunk's delta, as OpenAI sends it: the role, and ``content`` ``""`` for a
    reply in text or ``null`` for one that opens with a tool call (so that a client joining
    the chunks gets what the whole reply would have said)."""

    role: str = "assistant"
    content: str | None


class ChunkChoice(msgspec.Struct, kw_only=True):
    delta: Delta | OpeningDelta
    finish_reason: str | None = None
    index: int = 0
    logprobs: None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: None = None
    # Present (null until the last chunk) only when the client asked for usage.
    usage: Usage | msgspec.UnsetType | None = msgspec.UNSET


class ModelEntry(msgspec.Struct, kw_only=True):
    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct, kw_only=True):
    data: list[ModelEntry]
    object: Literal["list"] = "list"
