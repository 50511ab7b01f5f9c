"""What a reply stream carries: token deltas, then one ``done`` or ``error``.

Generation writes these to a per-session stream; every SSE client of the session reads the same
stream, so a reconnect (``Last-Event-ID``) resumes exactly after the last event it saw.
"""

from __future__ import annotations

import re
from uuid import UUID

import msgspec

from whalli.domain.model.errors import InvalidInput

_EVENT_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
MAX_EVENT_ID_PART = 2**64 - 1  # each part of an id, as Redis Streams allow
# What a reader, and the chat, are told of a reply whose generating process died.
INTERRUPTED_MESSAGE = (
    "The reply was interrupted: the server generating it stopped before it finished."
)


def parse_event_id(event_id: str) -> tuple[int, int]:
    """``"<ms>-<seq>"`` or ``"<ms>"`` (as Redis Streams accept them) as a pair; ids come back
    from browsers (``Last-Event-ID``), so anything else is ``InvalidInput``."""
    match = _EVENT_ID.fullmatch(event_id)
    parts = (0, 0) if match is None else (int(match[1]), int(match[2] or 0))
    if match is None or max(parts) > MAX_EVENT_ID_PART:
        raise InvalidInput("That is not a reply event id.", field="after")
    return parts


class ReplyEvent(msgspec.Struct, frozen=True, tag=True, tag_field="type", kw_only=True):
    """Base of the events of one reply."""


class TokenEvent(ReplyEvent, frozen=True, tag="token", kw_only=True):
    delta: str


class ReasoningEvent(ReplyEvent, frozen=True, tag="reasoning", kw_only=True):
    """A piece of a reasoning model's thinking (not part of the reply's text)."""

    delta: str


class DoneEvent(ReplyEvent, frozen=True, tag="done", kw_only=True):
    message_id: UUID
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    cost_usd: float
    status: str  # complete | aborted
    # Of the prompt tokens, read from / written to the provider's prompt cache; of the
    # completion tokens, the model's hidden reasoning. Defaults: an event written by an older
    # process (during a rolling deploy) still decodes.
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


class ErrorEvent(ReplyEvent, frozen=True, tag="error", kw_only=True):
    code: str
    message: str
    message_id: UUID | None = None


AnyReplyEvent = TokenEvent | ReasoningEvent | DoneEvent | ErrorEvent

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AnyReplyEvent)


def encode_reply_event(event: ReplyEvent) -> bytes:
    return _encoder.encode(event)


def decode_reply_event(data: bytes) -> AnyReplyEvent:
    event: AnyReplyEvent = _decoder.decode(data)
    return event


def is_final(event: ReplyEvent) -> bool:
    return isinstance(event, DoneEvent | ErrorEvent)
