"""Stop sequences a provider will not take, applied to its stream here instead.

Anthropic refuses a stop sequence made of whitespace only (``"\\n"``, a common choice of
OpenAI clients) with a 400. Those are cut here: text is passed on as it comes, except a tail
that could still be the start of a stop sequence, held back until the next text decides.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SURROGATE = re.compile("[\ud800-\udfff]")


class LocalStops:
    """Cut a stream of text before the first occurrence of any of ``stops``."""

    __slots__ = ("_held", "_stops")

    def __init__(self, stops: Sequence[str]) -> None:
        if not stops or not all(stops):
            raise ValueError("local stops need at least one non-empty sequence")
        self._stops = tuple(stops)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """The text to pass on now, and whether a stop sequence was met (then nothing after it
        may be passed on: the stream is over)."""
        seen = self._held + text
        if _SURROGATE.search(seen):  # a character sent in two halves: joined, to be matched
            seen = seen.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        cut = min((i for i in (seen.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return seen[:cut], True
        keep = self._pending_tail(seen)
        if keep == 0 and seen and "\ud800" <= seen[-1] <= "\udbff":
            keep = 1  # half of a character (its other half comes next): it may begin a stop
        self._held = seen[len(seen) - keep :]
        return seen[: len(seen) - keep], False

    def flush(self) -> str:
        """What was held back, once the stream ended without meeting a stop sequence."""
        held, self._held = self._held, ""
        return held

    def _pending_tail(self, text: str) -> int:
        """The length of the longest end of ``text`` that begins some stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest


def split_stops(stops: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """(the sequences the provider takes, the whitespace-only ones to apply locally)."""
    sent = [s for s in stops or () if s.strip()]
    local = [s for s in stops or () if s and not s.strip()]
    return sent, local
