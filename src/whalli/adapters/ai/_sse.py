"""An incremental Server-Sent Events decoder (the WHATWG event-stream format).

Bytes arrive in arbitrary pieces: a line, a UTF-8 character or a CRLF pair may be split between
two network reads, so the decoder keeps what it has not finished and yields only whole events.

Rules (from the format):
- one leading U+FEFF byte order mark is ignored;
- a line ends at CRLF, LF or a lone CR; an event is dispatched as soon as the line ending it
  has arrived, CR included (a CR closing a read is a line end at once, and an LF opening the
  next read is then the second half of that CRLF, skipped);
- each piece of text is scanned once: a long line arriving in many reads is kept as its
  pieces and joined once it ends (linear in its length, whatever the number of reads);
- an event (or an unfinished line) larger than ``max_event_chars`` is ``EventTooLarge``: no
  provider sends one (a token, or a tool call's piece, is a few KiB), and a server streaming
  one line without end would otherwise be held in memory until the idle timeout.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

MAX_EVENT_CHARS = 16 * 1024 * 1024


class EventTooLarge(ValueError):
    """The stream holds an event larger than the decoder takes."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # "message" when the stream names no event type
    data: str


@dataclass(slots=True)
class SseDecoder:
    """Feed bytes, get the events they complete; ``finish`` at end of stream."""

    # "utf-8-sig" drops one leading BOM (even split between reads), and only that one
    _text: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    )
    _partial: list[str] = field(default_factory=list)  # the unfinished line, in pieces
    _after_cr: bool = False  # the last text ended with CR: an LF opening the next is skipped
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _has_data: bool = False
    max_event_chars: int = MAX_EVENT_CHARS
    _held: int = 0  # characters of the unfinished line and of the event's data so far

    def feed(self, chunk: bytes) -> list[SseEvent]:
        return self._lines(self._text.decode(chunk))

    def finish(self) -> list[SseEvent]:
        """The event left unterminated when the stream ended, if any.

        The format says to drop it; some OpenAI-compatible servers end with ``data: [DONE]``
        and no blank line, and a complete reply should not read as a cut stream.
        """
        events = self._lines(self._text.decode(b"", final=True))
        if self._partial:
            line = "".join(self._partial)
            self._partial.clear()
            self._line(line)  # a last line is never blank: it only adds to the event
        last = self._dispatch()
        return [*events, last] if last is not None else events

    def _lines(self, text: str) -> list[SseEvent]:
        if not text:
            return []
        if self._after_cr:
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
        if "\r" in text:
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        self._held += len(text)
        if self._held > self.max_event_chars:
            raise EventTooLarge(f"an event of more than {self.max_event_chars} characters")
        lines = text.split("\n")
        rest = lines.pop()
        if not lines:  # no line ends here: only more of the unfinished one
            if rest:
                self._partial.append(rest)
            return []
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = "".join(self._partial)
            self._partial.clear()
        if rest:
            self._partial.append(rest)
        events: list[SseEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        return None  # "id" and "retry" do not matter to a one-shot client

    def _dispatch(self) -> SseEvent | None:
        event = SseEvent(self._event or "message", "\n".join(self._data))
        has_data = self._has_data
        self._event, self._data, self._has_data = "", [], False
        self._held = sum(map(len, self._partial))  # only the unfinished line is held now
        return event if has_data else None
