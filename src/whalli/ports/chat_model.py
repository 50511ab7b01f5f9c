"""A streaming chat-completion provider (OpenAI, Anthropic, xAI, OpenAI-compatible servers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from whalli.domain.model.base import Value
from whalli.domain.model.chats import GenerationParams, TokenUsage

# PromptMessage lives in the domain (the prompt cache key hashes it); re-exported for adapters.
from whalli.domain.model.chats import PromptMessage as PromptMessage
from whalli.domain.model.response_format import ResponseFormat
from whalli.domain.model.tools import Tools


class CompletionRequest(Value, frozen=True, kw_only=True):
    model: str  # the provider's own model name
    messages: tuple[PromptMessage, ...]
    params: GenerationParams = GenerationParams()
    tools: Tools | None = None  # the functions the model may call (only /v1 offers any)
    # JSON mode or structured outputs (only /v1 asks); None: text
    response_format: ResponseFormat | None = None
    # The model reasons before it answers (the catalog's ``reasoning``): its first token may
    # come after a long silence (OpenAI's reasoning models stream nothing while they think)
    reasons: bool = False
    # The most tokens the model writes in a reply, thinking included (the catalog's
    # ``max_output_tokens``), when known: an adapter that adds to ``max_tokens`` stays under it
    max_output_tokens: int | None = None
    # The reply cap to send when ``params`` sets none, for an API that requires one (the
    # catalog's ``default_max_tokens``: Anthropic's); None: the adapter's own default
    default_max_tokens: int | None = None
    # The model enforces a JSON Schema asked ``strict`` (the catalog's ``strict_outputs``): an
    # adapter whose API asks for that apart (Anthropic's) asks for it
    strict_outputs: bool = False
    # The model decides how much to think (the catalog's ``adaptive_thinking``): an adapter
    # asks it for an effort, not a budget
    adaptive_thinking: bool = False
    # The model continues a conversation that ends with its own turn (the catalog's ``prefill``)
    prefill: bool = True
    # Stop sequences asked of a model that refuses ``stop`` (the catalog's ``refuses``): not in
    # ``params``; the adapter cuts the reply's text where the first of them begins, and ends
    # the reply there as a stop sequence would have
    local_stops: tuple[str, ...] = ()
    # An opaque key shared by the requests of one conversation (a chat; a /v1 caller's
    # requests), for a provider that routes by one to the machine holding its prompt cache
    # (OpenAI's ``prompt_cache_key``); never anything a reader could map back to the chat
    conversation: str | None = None
    # Whether the prompt is worth writing to the provider's prompt cache (Anthropic's, which
    # bills the writes above the input price): False for a one-off request that no later
    # one repeats (a chat's title)
    cacheable: bool = True


class StreamStart(Value, frozen=True, kw_only=True):
    """What the provider counted of the prompt as it began to answer, before any text
    (Anthropic's ``message_start``: the prompt's tokens, those read from and written to its
    prompt cache). A reply that ends without its ``StreamEnd`` (stopped, failed mid-stream)
    is charged this prompt, not an estimate of it. Not a token: the answer has not started
    (an attempt failing after it may still be retried), and no time to first token."""

    usage: TokenUsage


class StreamDelta(Value, frozen=True, kw_only=True):
    """A piece of generated text."""

    text: str


class StreamRefusal(StreamDelta, frozen=True, kw_only=True):
    """A piece of the model's refusal to answer as asked (OpenAI's ``refusal``: a structured
    output it declines to give). A ``StreamDelta`` wherever refusals are not told apart (a
    chat shows it as the reply's text); ``/v1`` passes it on as OpenAI's ``refusal``."""


class StreamReasoning(Value, frozen=True, kw_only=True):
    """A piece of the model's reasoning (its thinking before or while it answers), streamed by
    reasoning models: OpenAI-compatible servers' ``reasoning_content``/``reasoning`` deltas,
    Anthropic's thinking blocks. Shown to the reader apart from the reply's text."""

    text: str


class StreamEnd(Value, frozen=True, kw_only=True):
    """The provider finished; usage as the provider reported it."""

    finish_reason: str
    usage: TokenUsage


class ToolCallDelta(Value, frozen=True, kw_only=True):
    """A piece of a tool call. ``index`` numbers the reply's calls from 0; the first piece of
    a call has its ``id`` and ``name``, the next ones (``None`` there) add ``arguments`` text,
    which joined make the call's arguments as JSON."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


StreamEvent = StreamStart | StreamDelta | StreamReasoning | ToolCallDelta | StreamEnd


class ChatModel(Protocol):
    provider: str

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Yield deltas (text, reasoning when the model streams any, and tool-call pieces when
        ``request.tools`` offers tools),
        then exactly one ``StreamEnd`` (finish reason ``tool_calls`` after tool calls). With
        a ``request.response_format`` the text is the JSON reply, however the provider is
        made to write it.

        Raises ``ProviderError`` subclasses (with ``retryable`` set) on failure; closing the
        iterator closes the upstream request.
        """
        ...
