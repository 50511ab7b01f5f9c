from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.ai._sse import SseDecoder, SseEvent

# Data a provider may stream: any text without line breaks (SSE splits data on them).
line_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40
)
events = st.lists(
    st.tuples(st.sampled_from(["", "message_start", "ping"]), st.lists(line_text, min_size=1)),
    max_size=6,
)


def encode(batch: list[tuple[str, list[str]]], newline: str) -> bytes:
    out = ": a comment" + newline
    for name, lines in batch:
        out += f"event: {name}{newline}" if name else ""
        out += "".join(f"data: {line}{newline}" for line in lines) + newline
    return out.encode()


def decode(data: bytes, cuts: list[int]) -> list[SseEvent]:
    decoder, found, start = SseDecoder(), [], 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        found += decoder.feed(data[start:cut])
        start = max(start, cut)
    return found + decoder.finish()


@given(events, st.sampled_from(["\n", "\r\n", "\r"]), st.lists(st.integers(0, 10_000)))
def test_events_survive_any_line_endings_and_any_chunk_boundaries(
    batch: list[tuple[str, list[str]]], newline: str, cuts: list[int]
) -> None:
    expected = [SseEvent(name or "message", "\n".join(lines)) for name, lines in batch]

    assert decode(encode(batch, newline), cuts) == expected


def test_a_space_after_the_colon_is_dropped_once_and_fields_without_one_kept() -> None:
    decoder = SseDecoder()

    assert decoder.feed(b"data:x\ndata:  y\nid: 7\nretry: 10\n\n") == [SseEvent("message", "x\n y")]


def test_an_event_without_data_is_not_dispatched() -> None:
    assert SseDecoder().feed(b"event: ping\n\n: only a comment\n\n") == []


def test_an_unterminated_last_event_is_still_delivered_at_the_end() -> None:
    decoder = SseDecoder()

    assert decoder.feed(b"data: [DONE]") == []
    assert decoder.finish() == [SseEvent("message", "[DONE]")]
