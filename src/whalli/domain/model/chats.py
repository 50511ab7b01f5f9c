"""Chats and their messages."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import msgspec

from whalli.domain.model.base import Entity, Value
from whalli.domain.model.errors import InvalidInput, InvalidStateTransition
from whalli.domain.model.images import ImagePart
from whalli.domain.model.tools import FUNCTION_NAME, ToolCall

TITLE_MAX = 120
# A chat's instructions (its system prompt): sent first with every reply in the chat.
SYSTEM_PROMPT_MAX = 20_000
# Characters of one message (a user's, as POST /api/chat/start takes it, or an imported one).
MESSAGE_MAX = 200_000


class MessageRole(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    # A tool's result, answering an assistant's tool call: only ever in a prompt sent through
    # /v1, never a stored message (the messages table refuses the role).
    TOOL = "tool"


class MessageStatus(StrEnum):
    PENDING = "pending"
    STREAMING = "streaming"
    COMPLETE = "complete"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (MessageStatus.COMPLETE, MessageStatus.ABORTED, MessageStatus.FAILED)


class ReasoningEffort(StrEnum):
    """How much a reasoning model thinks before it answers (OpenAI's ``reasoning_effort``;
    Anthropic's extended thinking, by budget: ``adapters.ai.anthropic_thinking``). ``none``
    (no reasoning at all) and ``xhigh`` are taken only by the models that list them (OpenAI's
    GPT-5.1 and later); every reasoning model takes the ``CLASSIC_EFFORTS`` unless it lists
    its own."""

    NONE = "none"
    MINIMAL = "minimal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    XHIGH = "xhigh"


class Verbosity(StrEnum):
    """How long and detailed an answer is asked to be (OpenAI's ``verbosity``, GPT-5 and
    later: ``ModelSpec.verbosity``); other models are not sent it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# What a reasoning model takes when its catalog entry names no efforts of its own.
CLASSIC_EFFORTS: tuple[ReasoningEffort, ...] = (
    ReasoningEffort.MINIMAL,
    ReasoningEffort.LOW,
    ReasoningEffort.MEDIUM,
    ReasoningEffort.HIGH,
)


MAX_STOP_SEQUENCES = 4  # OpenAI's limit (Anthropic allows more)
MAX_STOP_LENGTH = 200
_SEED_RANGE = (-(2**63), 2**63 - 1)


class GenerationParams(Value, frozen=True, kw_only=True):
    """How to sample a reply. ``None`` (every default) leaves the choice to the provider.

    Providers take what they support: OpenAI-compatible ones all of it; Anthropic temperature
    (capped at its 1.0), ``max_tokens``, ``top_p`` and ``stop`` (as ``stop_sequences``), not
    ``seed`` or the penalties (see the adapters)."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None  # up to 4 sequences that end the reply when produced
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    # Only for a model that reasons (``ModelSpec.reasoning``); None: the provider's default
    reasoning_effort: ReasoningEffort | None = None
    # Only sent to a model that takes it (``ModelSpec.verbosity``); None: the provider's default
    verbosity: Verbosity | None = None

    def filled_from(
        self, other: GenerationParams, *, but: frozenset[str] = frozenset()
    ) -> GenerationParams:
        """These parameters, each one left unset (``None``) taken from ``other``, except those
        named in ``but`` (which stay unset: the provider's default)."""
        return GenerationParams(**{
            name: getattr(self, name)
            if getattr(self, name) is not None or name in but
            else getattr(other, name)
            for name in GenerationParams.__struct_fields__
        })  # fmt: skip

    def __post_init__(self) -> None:
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            raise InvalidInput("temperature must be between 0 and 2", field="temperature")
        if self.max_tokens is not None and not 1 <= self.max_tokens <= 1_000_000:
            raise InvalidInput("maxTokens must be between 1 and 1000000", field="maxTokens")
        if self.top_p is not None and not 0.0 <= self.top_p <= 1.0:
            raise InvalidInput("topP must be between 0 and 1", field="topP")
        for name, value in (
            ("presencePenalty", self.presence_penalty),
            ("frequencyPenalty", self.frequency_penalty),
        ):
            if value is not None and not -2.0 <= value <= 2.0:
                raise InvalidInput(f"{name} must be between -2 and 2", field=name)
        if self.seed is not None and not _SEED_RANGE[0] <= self.seed <= _SEED_RANGE[1]:
            raise InvalidInput("seed must be a 64-bit integer", field="seed")
        if self.stop is not None and (
            not 1 <= len(self.stop) <= MAX_STOP_SEQUENCES
            or not all(1 <= len(s) <= MAX_STOP_LENGTH for s in self.stop)
        ):
            raise InvalidInput(
                f"stop takes 1 to {MAX_STOP_SEQUENCES} sequences of 1 to {MAX_STOP_LENGTH} "
                "characters",
                field="stop",
            )


def stored_reply_params(params: GenerationParams) -> GenerationParams:
    """A reply's parameters as stored (JSON in Postgres, which holds no NUL): the stop
    sequences with a NUL are left out of the stored copy (the reply itself was asked with them)."""
    if params.stop is not None and any("\x00" in stop for stop in params.stop):
        kept = tuple(stop for stop in params.stop if "\x00" not in stop)
        return msgspec.structs.replace(params, stop=kept or None)
    return params


def storable(text: str) -> str:
    """A model's text as a message keeps it: a NUL (which Postgres text cannot hold, and a
    model may stream) becomes U+FFFD, the replacement character."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


# The most tokens one call can be said to have used: a provider's count above it (a bug, or a
# hostile server) is taken as no count (the caller estimates instead), not stored and charged.
MAX_REPORTED_TOKENS = 10**9


def reported_count(value: object) -> int:
    """A token count as a provider reported it: a whole number from 1 to
    ``MAX_REPORTED_TOKENS``, else 0 (none said, or one that cannot be true)."""
    if type(value) is int and 0 < value <= MAX_REPORTED_TOKENS:
        return value
    return 0


class TokenUsage(Value, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Of the prompt tokens, those the provider read from its prompt cache (OpenAI's
    # cached_tokens, Anthropic's cache_read_input_tokens) and those it wrote to it
    # (Anthropic's cache_creation_input_tokens, billed above the input price), and of the
    # completion tokens, the model's hidden reasoning (its reasoning_tokens), when it said:
    # priced apart (``ModelSpec.price``) and passed on to /v1 clients
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # Of the cache writes, those to Anthropic's 1-hour cache (priced apart: twice the input
    # price); not kept with a reply, whose cost already counts them.
    cache_write_1h_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def replayed(self) -> TokenUsage:
        """The usage of this reply served again from Whalli's own cache: the same tokens
        (every reply counts them), none read from or written to a provider's prompt cache (no
        provider was called)."""
        if not (self.cached_prompt_tokens or self.cache_write_tokens):
            return self
        return TokenUsage(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )  # fmt: skip


class Chat(Entity, kw_only=True):
    id: UUID
    project_id: UUID
    user_id: UUID
    title: str
    created_at: datetime
    updated_at: datetime
    system_prompt: str | None = None
    # when the chat was pinned / archived, None when it is not; never both (archiving unpins)
    pinned_at: datetime | None = None
    archived_at: datetime | None = None

    @classmethod
    def start(
        cls,
        *,
        id: UUID,
        project_id: UUID,
        user_id: UUID,
        first_message: str,
        now: datetime,
        system_prompt: str | None = None,
    ) -> Chat:
        """A new chat takes its title from its first message."""
        return cls(
            id=id,
            project_id=project_id,
            user_id=user_id,
            title=title_from(first_message),
            created_at=now,
            updated_at=now,
            system_prompt=clean_system_prompt(system_prompt),
        )

    def instruct(self, system_prompt: str | None, now: datetime) -> None:
        """Set (or with ``None`` or blank text, remove) the chat's system prompt."""
        self.system_prompt = clean_system_prompt(system_prompt)
        self.updated_at = now

    def rename(self, title: str, now: datetime) -> None:
        self.title = clean_name(title, limit=TITLE_MAX, field="title", what="A title")
        self.updated_at = now

    @property
    def pinned(self) -> bool:
        return self.pinned_at is not None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def pin(self, pinned: bool, now: datetime) -> None:
        """Pin (keeping the time of a pin already there) or unpin. An archived chat cannot be
        pinned (``InvalidInput``). Not an update: the chat keeps its place in the list."""
        if not pinned:
            self.pinned_at = None
        elif self.archived_at is not None:
            raise InvalidInput("An archived chat cannot be pinned; unarchive it.", field="pinned")
        elif self.pinned_at is None:
            self.pinned_at = now

    def archive(self, archived: bool, now: datetime) -> None:
        """Archive (which unpins; the time of an archive already there is kept) or unarchive.
        Not an update: the chat keeps its place in the list."""
        if not archived:
            self.archived_at = None
            return
        self.pinned_at = None
        if self.archived_at is None:
            self.archived_at = now


def clean_name(text: str, *, limit: int, field: str, what: str) -> str:
    """A name as stored (a chat's title, a preset's): whitespace folded to single spaces, 1 to
    ``limit`` characters, no control character (NUL included, which Postgres text cannot hold)
    and at least one visible one (``visible_words``: a name of only zero-width spaces or
    direction marks would be listed blank); else ``InvalidInput`` naming ``field`` (``what`` is
    what the message calls it). Format characters beside visible ones stay (an emoji's ZWJ)."""
    cleaned = " ".join(text.split())
    if not 1 <= len(cleaned) <= limit:
        raise InvalidInput(f"{what} needs 1 to {limit} characters.", field=field)
    if any(unicodedata.category(ch) == "Cc" for ch in cleaned):
        raise InvalidInput(
            f"{what} may not contain control characters (NUL included).", field=field
        )
    if not visible_words(cleaned):
        raise InvalidInput(f"{what} needs at least one visible character.", field=field)
    return cleaned


def check_message_text(content: str) -> None:
    """A user's message must hold more than whitespace and no NUL (which Postgres text cannot
    store: refused here, naming the field, rather than by the database)."""
    if not content.strip():
        raise InvalidInput("A message cannot be empty.", field="message")
    if "\x00" in content:
        raise InvalidInput("A message may not contain the NUL character.", field="message")


def clean_system_prompt(text: str | None) -> str | None:
    """A chat's instructions as stored (see ``clean_instructions``)."""
    return clean_instructions(text, field="systemPrompt", name="A system prompt")


def clean_instructions(text: str | None, *, field: str, name: str) -> str | None:
    """Instructions as stored: ``None`` for none (or only whitespace), else the text with its
    outer whitespace stripped, at most ``SYSTEM_PROMPT_MAX`` characters and no NUL (else
    ``InvalidInput`` naming ``field``; ``name`` is what the message calls them)."""
    if text is None or not text.strip():
        return None
    cleaned = text.strip()
    if "\x00" in cleaned:  # Postgres text cannot hold it: refused here, naming the field
        raise InvalidInput(f"{name} may not contain the NUL character.", field=field)
    if len(cleaned) > SYSTEM_PROMPT_MAX:
        raise InvalidInput(
            f"{name} may have at most {SYSTEM_PROMPT_MAX} characters ({len(cleaned)} given).",
            field=field,
            limit=SYSTEM_PROMPT_MAX,
        )
    return cleaned


def visible_words(text: str) -> str:
    """``text`` on one line: whitespace runs as one space, control and format characters
    (NUL, BEL, zero-width spaces, direction overrides: what a database refuses or nobody sees)
    left out."""
    kept = "".join(ch for ch in " ".join(text.split()) if unicodedata.category(ch)[0] != "C")
    return " ".join(kept.split())


def title_from(text: str) -> str:
    """A new chat's title, from its first message (``visible_words``, cut to 60 characters at
    a word when it can be)."""
    words = visible_words(text)
    if len(words) <= 60:
        return words or "New chat"
    cut = words[:60].rsplit(" ", 1)[0] or words[:60]
    return cut + "…"


class Message(Entity, kw_only=True):
    id: UUID
    chat_id: UUID
    role: MessageRole
    content: str
    status: MessageStatus = MessageStatus.COMPLETE
    model: str | None = None
    provider: str | None = None
    usage: TokenUsage = TokenUsage()
    cost_usd: float = 0.0
    cached: bool = False
    finish_reason: str | None = None
    ttft_ms: int | None = None
    total_ms: int | None = None
    attachment_ids: tuple[UUID, ...] = ()
    error: str | None = None
    # What a reasoning model streamed as its thinking before (or while) answering, as shown
    # to the reader; never sent back as context
    reasoning: str = ""
    # A reply's: the sampling parameters it was asked with (a regeneration asks again with them)
    params: GenerationParams = GenerationParams()
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_user(
        cls,
        *,
        id: UUID,
        chat_id: UUID,
        content: str,
        now: datetime,
        attachment_ids: tuple[UUID, ...] = (),
    ) -> Message:
        check_message_text(content)
        return cls(
            id=id,
            chat_id=chat_id,
            role=MessageRole.USER,
            content=content,
            attachment_ids=attachment_ids,
            created_at=now,
            updated_at=now,
        )

    def edit(self, content: str, now: datetime) -> None:
        """A user's message, rewritten (before it is answered again)."""
        if self.role is not MessageRole.USER:
            raise InvalidInput("Only a user's message can be edited.", field="message")
        check_message_text(content)
        self.content, self.updated_at = content, now

    @classmethod
    def pending_reply(
        cls, *, id: UUID, chat_id: UUID, model: str, provider: str, now: datetime,
        params: GenerationParams | None = None,
    ) -> Message:  # fmt: skip
        return cls(
            id=id,
            chat_id=chat_id,
            role=MessageRole.ASSISTANT,
            content="",
            status=MessageStatus.PENDING,
            model=model,
            provider=provider,
            params=stored_reply_params(params or GenerationParams()),
            created_at=now,
            updated_at=now,
        )

    def finish(
        self,
        *,
        status: MessageStatus,
        content: str,
        usage: TokenUsage,
        now: datetime,
        finish_reason: str | None = None,
        cost_usd: float = 0.0,
        cached: bool = False,
        ttft_ms: int | None = None,
        total_ms: int | None = None,
        error: str | None = None,
        reasoning: str = "",
    ) -> None:
        """Record the outcome of a reply once; a final message never changes again."""
        if self.status.is_final:
            raise InvalidStateTransition("This reply is already final.")
        if not status.is_final:
            raise InvalidStateTransition("A reply can only finish in a final status.")
        self.status, self.content, self.usage = status, content, usage
        self.finish_reason, self.cost_usd, self.cached = finish_reason, cost_usd, cached
        self.ttft_ms, self.total_ms, self.error = ttft_ms, total_ms, error
        self.reasoning, self.updated_at = reasoning, now


class PromptMessage(Value, frozen=True, kw_only=True):
    """One message of the context sent to a model (the port and the prompt cache key speak it).

    An assistant turn may carry the tool calls it made (its ``content`` then often empty); a
    tool turn answers one of them (``tool_call_id``) with its result as ``content``.

    A user message with images (``/v1``'s, or attached files sent as images) also has
    ``parts``: its text and image parts in the order sent (``content`` is then its text parts
    joined); without images ``parts`` is empty and ``content`` is the whole message, as
    before images existed.

    ``name`` is who spoke, in a conversation of several participants (OpenAI's message
    ``name``, which /v1 clients send): passed on to the providers that read it."""

    role: MessageRole
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    parts: tuple[str | ImagePart, ...] = ()
    name: str | None = None

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ImagePart))


def check_tool_turns(messages: Sequence[PromptMessage]) -> None:
    """Tool turns as every provider requires them (else ``InvalidInput`` naming the field,
    ``i`` a turn's place in ``messages``):
    - a call's id is unique within its turn (``messages[i].tool_calls[n].id``) and its
      function's name one a tool can have (``messages[i].tool_calls[n].function.name``);
    - a tool turn answers a call of the assistant turn right before it (only other tool turns
      between them), once (``messages[i].tool_call_id``);
    - every call is answered that way (``messages[i].tool_calls``)."""
    open_calls: dict[str, int] = {}  # the calls of the turn before, not answered yet
    caller: int | None = None  # that turn's place
    unanswered: int | None = None  # the first turn with a call left unanswered
    for index, message in enumerate(messages):
        if message.role is MessageRole.TOOL:
            field = f"messages[{index}].tool_call_id"
            if message.tool_call_id is None:
                raise InvalidInput(f"{field} is required for a tool message.", field=field)
            if open_calls.pop(message.tool_call_id, None) is None:
                raise InvalidInput(
                    f"{field} ({message.tool_call_id!r}) answers no tool call of the assistant "
                    "message right before it (only tool messages may come between them), or "
                    "answers one already answered.",
                    field=field,
                )
            continue
        if open_calls and unanswered is None:
            unanswered = caller
        open_calls, caller = _calls_of(message, index), index
    if open_calls and unanswered is None:
        unanswered = caller
    if unanswered is not None:  # (a misplaced tool turn is named first, above)
        field = f"messages[{unanswered}].tool_calls"
        raise InvalidInput(
            f"{field}: every call needs a tool message answering it right after this turn.",
            field=field,
        )


def _calls_of(message: PromptMessage, index: int) -> dict[str, int]:
    calls: dict[str, int] = {}
    for number, call in enumerate(message.tool_calls):
        if call.id in calls:
            field = f"messages[{index}].tool_calls[{number}].id"
            raise InvalidInput(f"{field} ({call.id!r}) names another call of the turn too.",
                               field=field)  # fmt: skip
        if FUNCTION_NAME.fullmatch(call.name) is None:
            field = f"messages[{index}].tool_calls[{number}].function.name"
            raise InvalidInput(f"{field} must be 1 to 64 letters, digits, '_' or '-'.", field=field)
        calls[call.id] = number
    return calls
