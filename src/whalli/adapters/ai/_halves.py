"""Emoji split into two lone surrogate escapes, joined again.

A proxy that re-chunks a provider's text by UTF-16 code units (JavaScript's ``slice``) may
send an astral character (an emoji) as two deltas, the first ending with its high surrogate
(``"\\ud83d"``), the next starting with its low one (``"\\ude00"``): legal JSON (RFC 8259
§8.2), and no text on its own. ``decode_json(..., halves=True)`` keeps such edge halves;
``SurrogateJoiner`` pairs them across a stream's deltas (text, reasoning, and each tool call's
arguments apart) and turns any half left alone into U+FFFD, so everything it passes on is
valid text (streamed, stored, encoded as UTF-8).
"""

from __future__ import annotations

from whalli.ports.chat_model import (
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamReasoning,
    StreamStart,
    ToolCallDelta,
)

REPLACEMENT = "\ufffd"
Channel = str | int  # "text", "reasoning", or a tool call's index


def _high(c: str) -> bool:
    return "\ud800" <= c <= "\udbff"


def _low(c: str) -> bool:
    return "\udc00" <= c <= "\udfff"


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate as U+FFFD (a pair would be one character here)."""
    if text.isascii():
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def edge_halves_kept(text: str) -> str:
    """``valid_text``, but a lone low surrogate first and a lone high one last are kept."""
    if not text or text.isascii():
        return text
    head = text[0] if _low(text[0]) else ""
    tail = text[-1] if len(text) > len(head) and _high(text[-1]) else ""
    middle = text[len(head) : len(text) - len(tail)]
    return head + valid_text(middle) + tail


class SurrogateJoiner:
    """Pairs the edge halves of consecutive deltas of one stream (module docstring)."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[Channel, str] = {}  # a high surrogate waiting for its low half

    def events(self, event: StreamEvent) -> tuple[StreamEvent, ...]:
        """``event`` as it passes on (its text completed, or a half held back), preceded by
        U+FFFD for the halves left when the stream ends. A half waits for its channel's next
        piece across the other channels' events (a server may send reasoning and text in one
        chunk), so one never completed comes out as U+FFFD at the end, not in its place."""
        if isinstance(event, StreamStart):
            return (event,)  # (no text: before any)
        if isinstance(event, StreamDelta | StreamReasoning):
            text = event.text
            if not self._held and (text.isascii() or not _edged(text)):
                return (event,)  # nearly every delta: nothing to join
            text = self._join("text" if isinstance(event, StreamDelta) else "reasoning", text)
            if not text:  # a delta that was one held half says nothing yet
                return ()
            return (event if text is event.text else type(event)(text=text),)
        if isinstance(event, ToolCallDelta):
            arguments = self._join(event.index, event.arguments)
            if arguments is event.arguments and _plain(event.id) and _plain(event.name):
                return (event,)
            if not arguments and event.id is None and event.name is None:
                return ()
            return (
                ToolCallDelta(
                    index=event.index,
                    id=None if event.id is None else valid_text(event.id),
                    name=None if event.name is None else valid_text(event.name),
                    arguments=arguments,
                ),
            )
        return (*self.left_alone(), _ended(event))

    def _join(self, channel: Channel, text: str) -> str:
        """``text`` with the half held for ``channel`` before it and its own last half held."""
        held = self._held.pop(channel, None)
        if not text:
            if held is not None:
                self._held[channel] = held
            return text
        if held is not None:
            if _low(text[0]):
                text = (held + text[0]).encode("utf-16-le", "surrogatepass").decode(
                    "utf-16-le"
                ) + text[1:]
            else:
                text = REPLACEMENT + text
        elif _low(text[0]):
            text = REPLACEMENT + text[1:]
        if _high(text[-1]):
            self._held[channel] = text[-1]
            text = text[:-1]
        return text

    def left_alone(self) -> tuple[StreamEvent, ...]:
        """U+FFFD for each half held, which is then held no more: for a stream that ends or
        fails."""
        if not self._held:
            return ()
        held, self._held = self._held, {}
        out: list[StreamEvent] = []
        for channel in held:
            if channel == "text":
                out.append(StreamDelta(text=REPLACEMENT))
            elif channel == "reasoning":
                out.append(StreamReasoning(text=REPLACEMENT))
            else:
                out.append(ToolCallDelta(index=int(channel), arguments=REPLACEMENT))
        return tuple(out)


def _edged(text: str) -> bool:
    return _low(text[0]) or _high(text[-1])


def _plain(value: str | None) -> bool:
    return value is None or value.isascii() or valid_text(value) == value


def _ended(event: StreamEvent) -> StreamEvent:
    if isinstance(event, StreamEnd) and not event.finish_reason.isascii():
        return StreamEnd(finish_reason=valid_text(event.finish_reason), usage=event.usage)
    return event
