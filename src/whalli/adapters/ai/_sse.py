"""An incremental Server-Sent Events decoder (the WHATWG event-stream format).

Bytes arrive in arbitrary pieces: a line, a UTF-8 character or a CRLF pair may be split between
two network reads, so the decoder keeps what it has not finished and yields only whole events.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # "message" when the stream names no event type
    data: str


@dataclass(slots=True)
class SseDecoder:
    """Feed bytes, get the events they complete; ``finish`` at end of stream."""

    _text: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _pending: str = ""
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _has_data: bool = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        return self._lines(self._pending + self._text.decode(chunk), final=False)

    def finish(self) -> list[SseEvent]:
        """The event left unterminated when the stream ended, if any.

        The format says to drop it; some OpenAI-compatible servers end with ``data: [DONE]``
        and no blank line, and a complete reply should not read as a cut stream.
        """
        events = self._lines(self._pending + self._text.decode(b"", final=True) + "\n", final=True)
        last = self._dispatch()
        return [*events, last] if last is not None else events

    def _lines(self, text: str, *, final: bool) -> list[SseEvent]:
        # A trailing "\r" may be the first half of a CRLF: keep it until the next piece.
        if not final and text.endswith("\r"):
            text, self._pending = text[:-1], "\r"
        else:
            self._pending = ""
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._pending = lines.pop() + self._pending
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
        return event if has_data else None
