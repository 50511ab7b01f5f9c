"""Building the context sent to a model: earlier messages, attached files, the new message.

Rules:
- the new user message is always sent, last; the text of its attached files goes in the same
  user message, before the question, each file labelled ``Attached file: <name>`` and cut to
  ``attachment_char_cap`` characters (the label then says how much of it is included); a text
  that extraction cut short (``WHALLI_EXTRACTION_MAX_CHARS``, a page limit) is labelled so,
  its stored length never given as the file's;
- earlier messages are sent in their order, only complete user and assistant replies with some
  text (no system notes, no aborted, failed or pending replies); an earlier user message keeps
  its attached files' text, labelled and cut the same way (``earlier_files``; a file deleted
  since is left out), so a follow-up question can still be about a file sent before;
- they are trimmed oldest-first: the newest earlier messages are kept while the estimate of the
  whole prompt fits ``context_window - reserve_for_reply``; once one does not fit, it and every
  older one are dropped, so the kept history is always an unbroken, most recent run. An earlier
  message whose files do not fit is first tried without their text: its files are then only
  named, each marked left out;
- an attached image may go as the image itself (``prompt_files`` says when): labelled
  ``Attached image: <name>``, in the message's ``parts``, counting ``IMAGE_TOKENS``;
- the context starts with a user message (some providers refuse an assistant turn first), so an
  assistant reply left at the start by trimming is dropped too;
- the chat's system prompt, when it has one, is sent first as a system message and is never
  trimmed: it counts with the new message;
- if the new message and its attachments (and the system prompt) alone do not fit,
  ``InvalidInput`` names the limit (and ``maxTokens``, not the message, when the message would
  fit the reply's default room: the reply's ``maxTokens`` is what leaves it none).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec

from whalli.domain.model.attachments import ExtractionExcerpt, ExtractionResult
from whalli.domain.model.catalog import ModelSpec
from whalli.domain.model.chats import (
    Message,
    MessageRole,
    MessageStatus,
    PromptMessage,
    ReasoningEffort,
    TokenUsage,
)
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.images import IMAGE_TOKENS, ImagePart

if TYPE_CHECKING:
    from whalli.domain.services.chat.prompt_source import PromptSource

# The estimate: about 4 bytes of UTF-8 per token, rounded up. That is close for English with
# OpenAI and Anthropic tokenizers and coarser elsewhere (code, CJK), which is why a reply reserve
# is kept; it costs nothing and needs no per-model tokenizer.
BYTES_PER_TOKEN = 4
# Each message also costs a few tokens of role and separator markup (OpenAI documents 3 to 4).
MESSAGE_OVERHEAD_TOKENS = 4

_CONVERSATION_ROLES = (MessageRole.USER, MessageRole.ASSISTANT)

# An attached file as a prompt takes it: its text, its extraction (what says whether the text
# is whole: ``attachment_block``), or the file as an image.
FileBody = str | ExtractionResult | ImagePart


def estimate_tokens(text: str) -> int:
    """The token estimate of a text alone: ``ceil(utf8_bytes / 4)``."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return -(-size // BYTES_PER_TOKEN)


def estimate_message_tokens(message: PromptMessage) -> int:
    """A message's text estimate plus the per-message overhead, plus ``IMAGE_TOKENS`` for each
    of its images (``/v1``'s, attached ones; see ``domain.model.images``)."""
    images = len(message.images) * IMAGE_TOKENS if message.parts else 0
    return estimate_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS + images


def estimate_prompt_tokens(messages: Iterable[PromptMessage]) -> int:
    """The estimate of a whole prompt (what ``build_context`` keeps within the window)."""
    return sum(estimate_message_tokens(m) for m in messages)


def usage_or_estimate(
    reported: TokenUsage | None,
    prompt: Iterable[PromptMessage],
    text: str,
    started: TokenUsage | None = None,
) -> TokenUsage:
    """The usage the provider reported (``reported``: ``None`` when its answer did not end);
    when it reported none (a reply cut short, one cut by a stop Whalli applies, a provider
    that does not report) and it answered or some text was served, an estimate of that text
    (a reasoning model's hidden reasoning is not known, so not counted) and of the prompt,
    unless the provider counted the prompt as it began (``started``: its count, and what of
    it came from or went to its prompt cache, are kept, with or without any text: Claude
    bills a prompt it began answering). Failed before any text and uncounted, nothing is
    known to have been served: zero. A report that leaves one count out (0: not said, or one
    past belief) has it estimated (the prompt's as counted at the start, if it was)."""
    usage = reported or TokenUsage()
    completion = estimate_tokens(text)
    if usage.total > 0:  # a count left out (or past belief, see ``reported_count``): estimated
        if usage.prompt_tokens == 0:
            counted = started.prompt_tokens if started is not None else 0
            usage = msgspec.structs.replace(
                usage, prompt_tokens=counted or estimate_prompt_tokens(prompt)
            )
        if usage.completion_tokens == 0 and completion:
            usage = msgspec.structs.replace(usage, completion_tokens=completion)
        return usage
    if started is not None and started.prompt_tokens > 0:  # counted: charged, text or not
        counted = max(completion, started.completion_tokens)
        return msgspec.structs.replace(started, completion_tokens=counted)
    if text or reported is not None:
        return TokenUsage(
            prompt_tokens=estimate_prompt_tokens(prompt), completion_tokens=completion
        )
    return usage


def attachment_block(filename: str, text: str | ExtractionResult, char_cap: int) -> str:
    """The labelled text of one attached file, cut to ``char_cap`` characters. ``text``: the
    whole text, or the file's extraction (an ``ExtractionExcerpt`` of at least ``char_cap``
    characters says the same as the whole text would). A text that extraction cut short
    (``truncated``) is said to be: its length is not the file's."""
    # The name comes from the client: one line, so it cannot pose as a second label or a message.
    name = " ".join(filename.split()) or "unnamed file"
    length, blank, cut_at_extraction = _measured(text)
    body = text if isinstance(text, str) else text.text
    if blank:
        return f"Attached file: {name}\n(no text could be extracted from this file)"
    if cut_at_extraction:
        cut = f"its text was cut at extraction after {length} characters: the file holds more"
        if length <= char_cap:
            return f"Attached file: {name} ({cut})\n{body}"
        return f"Attached file: {name} (first {char_cap} characters; {cut})\n{body[:char_cap]}"
    if length <= char_cap:
        return f"Attached file: {name}\n{body}"
    return f"Attached file: {name} (first {char_cap} of {length} characters)\n{body[:char_cap]}"


def _measured(text: str | ExtractionResult) -> tuple[int, bool, bool]:
    """The whole text's length, whether it is blank, and whether extraction cut it."""
    if isinstance(text, str):
        return len(text), not text.strip(), False
    if isinstance(text, ExtractionExcerpt):
        return text.length, text.blank, text.truncated
    return len(text.text), not text.text.strip(), text.truncated


def image_label(filename: str) -> str:
    """The line before an attached image sent as an image."""
    return f"Attached image: {' '.join(filename.split()) or 'unnamed file'}"


def left_out_block(filename: str) -> str:
    """The label of an earlier message's file whose text no longer fits the context."""
    name = " ".join(filename.split()) or "unnamed file"
    return f"Attached file: {name} (left out: the conversation no longer fits with it)"


@dataclass(frozen=True)
class ContextLimits:
    """How much of a model's window the prompt may use."""

    reserve_for_reply: int = 1024  # tokens kept free for the reply (at most a quarter of it)
    attachment_char_cap: int = 20_000  # characters of one attachment's text

    def build(
        self,
        spec: ModelSpec,
        history: Sequence[Message] | None,
        new_message: str,
        attachments: Sequence[tuple[str, FileBody]],
        system: str | None = None,
        earlier_files: Mapping[UUID, tuple[str, FileBody]] | None = None,
        *,
        reply_tokens: int | None = None,
        effort: ReasoningEffort | None = None,
    ) -> tuple[PromptMessage, ...]:
        """``build_context`` for ``spec``'s window; ``history`` excludes the new message.

        The reply's room is ``reserve_for_reply``, or the cap the model is sent by default
        (``ModelSpec.default_max_tokens``) when larger (at most a quarter of the window), or the
        reply's own ``maxTokens`` (``reply_tokens``) when larger: a provider refuses a prompt
        and a reply cap that together exceed the window (OpenAI's 400
        ``context_length_exceeded``), so a long chat asked for a long reply keeps less of its
        history instead of failing. A model asked to think with a budget (``effort``,
        ``ModelSpec.thinking_room``: Claude's) is asked for that budget on top, which Anthropic
        counts against the window too: it is kept free as well, as far as the model's output
        cap (which the request's ``max_tokens`` never passes) and three quarters of the window
        allow. A ``maxTokens`` that leaves no room for a message that fits the default room is
        what ``InvalidInput`` names (``field`` ``maxTokens``, ``limit`` the most that fits)."""
        window = spec.context_window
        # a reply sent a cap by default (``default_max_tokens``: Claude's) is kept that room
        reserve = min(max(self.reserve_for_reply, spec.default_max_tokens or 0), window // 4)
        if reply_tokens is not None and reply_tokens >= window:
            raise InvalidInput(
                f"maxTokens {reply_tokens} leaves no room for the conversation in this model's "
                f"context window of {window} tokens.",
                field="maxTokens",
                limit=window - 1,
            )
        room = reply_room(spec, max(reserve, reply_tokens or 0), effort)
        try:
            return build_context(
                history=history or (),
                new_message=new_message,
                attachments=attachments,
                system=system,
                earlier_files=earlier_files or {},
                context_window=window,
                reserve_for_reply=room,
                attachment_char_cap=self.attachment_char_cap,
            )
        except InvalidInput as e:
            needed = e.details.get("estimated_tokens")
            # the message fits the room the reply is kept by default: maxTokens is what is wrong
            if not isinstance(needed, int) or needed > window - reply_room(spec, reserve, effort):
                raise
            raise InvalidInput(
                f"maxTokens {reply_tokens} leaves only {window - room} tokens for this message "
                f"(about {needed} needed) in this model's context window of {window} tokens.",
                field="maxTokens",
                limit=window - needed,
                estimated_tokens=needed,
            ) from None


def reply_room(spec: ModelSpec, answer: int, effort: ReasoningEffort | None) -> int:
    """The tokens kept free of ``spec``'s window for a reply of ``answer`` tokens asked
    ``effort``: the answer's, and the thinking budget (if any) within the output cap and
    three quarters of the window (never less than the answer's)."""
    thinking = spec.thinking_room(effort)
    if not thinking:
        return answer
    room = answer + thinking
    if spec.max_output_tokens is not None:
        room = min(room, spec.max_output_tokens)
    return max(answer, min(room, spec.context_window * 3 // 4))


@dataclass(frozen=True)
class PreparedReply:
    """A reply ready to generate: its pending message (saved) and the prompt to send."""

    reply: Message
    prompt: tuple[PromptMessage, ...]
    # What ``prompt`` was built from: a fallback model gets it built for its own window
    # (``None``: fallbacks are sent ``prompt`` as it is)
    source: PromptSource | None = None
    # Set on the first reply of a chat this start created (``POST /api/chat/start`` without a
    # chat): that chat's title then. Once the reply is complete, the chat is queued for an
    # automatic title, which the job sets only while the chat still has this one. Known in
    # process, so the session stored in Redis does not carry it.
    new_chat_title: str | None = None

    @property
    def first_of_new_chat(self) -> bool:
        return self.new_chat_title is not None


def build_context(
    *,
    history: Sequence[Message],
    new_message: str,
    attachments: Sequence[tuple[str, FileBody]],
    context_window: int,
    reserve_for_reply: int,
    attachment_char_cap: int,
    system: str | None = None,
    earlier_files: Mapping[UUID, tuple[str, FileBody]] | None = None,
) -> tuple[PromptMessage, ...]:
    """The prompt for one reply (see the module docstring for the rules).

    ``history`` is the chat's earlier messages, oldest first, without the new one; ``attachments``
    are (file name, extracted text) pairs; ``system`` the chat's system prompt; ``earlier_files``
    the (file name, extracted text) of the files of earlier messages, by id. Raises
    ``InvalidInput`` when the new message and its attachments (with the system prompt) alone
    exceed the window minus the reply reserve.
    """
    if context_window <= 0 or reserve_for_reply < 0 or attachment_char_cap < 0:
        raise ValueError("the window must be positive, the reserve and the cap not negative")
    head, new = _new_turn(new_message, attachments, system, attachment_char_cap)
    limit = context_window - reserve_for_reply
    needed = estimate_prompt_tokens((*head, new))
    if needed > limit:
        what = "This message and its attachments need" if attachments else "This message needs"
        if head:
            what = what.replace(" need", ", with the chat's system prompt, need")
        raise InvalidInput(
            f"{what} about {needed} tokens; this model takes at most {limit} "
            f"(a context window of {context_window} tokens, {reserve_for_reply} kept for "
            "the reply).",
            field="message",
            limit=limit,
            estimated_tokens=needed,
        )
    budget = limit - needed
    files = earlier_files or {}
    kept: list[PromptMessage] = []
    for message in reversed(history):
        if not _is_conversation(message):
            continue
        prompt = _earlier(message, files, attachment_char_cap, with_text=True)
        cost = estimate_message_tokens(prompt)
        if cost > budget and prompt.content != message.content:
            prompt = _earlier(message, files, attachment_char_cap, with_text=False)
            cost = estimate_message_tokens(prompt)
        if cost > budget:
            break
        budget -= cost
        kept.append(prompt)
    kept.reverse()
    first_user = next((i for i, m in enumerate(kept) if m.role == MessageRole.USER), len(kept))
    return (*head, *kept[first_user:], new)


def new_turn_tokens(
    new_message: str,
    attachments: Sequence[tuple[str, FileBody]],
    system: str | None,
    attachment_char_cap: int,
) -> int:
    """The estimate of what ``build_context`` always sends: the system prompt and the new
    message with its files."""
    head, new = _new_turn(new_message, attachments, system, attachment_char_cap)
    return estimate_prompt_tokens((*head, new))


def _new_turn(
    new_message: str,
    attachments: Sequence[tuple[str, FileBody]],
    system: str | None,
    char_cap: int,
) -> tuple[tuple[PromptMessage, ...], PromptMessage]:
    new = with_files(new_message, attachments, char_cap, with_text=True)
    head = () if system is None else (PromptMessage(role=MessageRole.SYSTEM, content=system),)
    return head, new


def _earlier(
    message: Message,
    files: Mapping[UUID, tuple[str, FileBody]],
    char_cap: int,
    *,
    with_text: bool,
) -> PromptMessage:
    """An earlier message as sent: a user's with its files still there, before its text."""
    attached = [files[i] for i in message.attachment_ids if i in files]
    if not attached or message.role is not MessageRole.USER:
        return PromptMessage(role=message.role, content=message.content)
    return with_files(message.content, attached, char_cap, with_text=with_text)


def with_files(
    text: str, files: Sequence[tuple[str, FileBody]], char_cap: int, *, with_text: bool
) -> PromptMessage:
    """A user message with its files before its text: each file's labelled text, or its label
    and image (without ``with_text``: only each one's name, marked left out). With images the
    message has ``parts``, its text parts joined by blank lines as ``content``."""
    parts: list[str | ImagePart] = []
    for name, body in files:
        if not with_text:
            parts.append(left_out_block(name))
        elif isinstance(body, ImagePart):
            parts += [image_label(name), body]
        else:
            parts.append(attachment_block(name, body, char_cap))
    parts.append(text)
    texts = [p for p in parts if isinstance(p, str)]
    content = "\n\n".join(texts)
    if len(texts) == len(parts):
        return PromptMessage(role=MessageRole.USER, content=content)
    return PromptMessage(role=MessageRole.USER, content=content, parts=tuple(_joined(parts)))


def _joined(parts: list[str | ImagePart]) -> list[str | ImagePart]:
    """Neighbouring text parts as one (a blank line between them)."""
    merged: list[str | ImagePart] = []
    for part in parts:
        last = merged[-1] if merged else None
        if isinstance(part, str) and isinstance(last, str):
            merged[-1] = f"{last}\n\n{part}"
        else:
            merged.append(part)
    return merged


def _is_conversation(message: Message) -> bool:
    return (
        message.status == MessageStatus.COMPLETE
        and message.role in _CONVERSATION_ROLES
        and bool(message.content.strip())
    )
