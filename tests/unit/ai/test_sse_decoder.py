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


def test_one_leading_byte_order_mark_is_ignored_even_split_between_reads() -> None:
    decoder = SseDecoder()

    assert decoder.feed(b"\xef\xbb") == []
    assert decoder.feed(b"\xbfdata: first\n\n") == [SseEvent("message", "first")]
    # only the leading one: a later BOM is text
    assert decoder.feed(b"data: \xef\xbb\xbfx\n\n") == [SseEvent("message", "\ufeffx")]


def test_a_lone_cr_ending_a_read_dispatches_the_event_at_once() -> None:
    decoder = SseDecoder()

    assert decoder.feed(b"data: a\r\r") == [SseEvent("message", "a")]
    # the LF opening the next read ends no line: it was the second half of a CRLF
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r\n") == [SseEvent("message", "b")]
    assert decoder.feed(b"\n") == []  # a blank line: nothing to dispatch
    assert decoder.finish() == []


def test_a_cr_ending_a_read_then_a_read_decoding_to_nothing_still_skips_the_lf() -> None:
    decoder = SseDecoder()

    assert decoder.feed(b"data: \xc3\xa9\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n\n") == [SseEvent("message", "é")]


def test_a_multi_megabyte_event_in_small_reads_is_read_whole() -> None:
    """A base64 image or large tool-call arguments in one delta: one event, many reads."""
    payload = ("0123456789abcdef" * 4096) * 48  # 3 MiB
    data = f"data: {payload}\ndata: tail\n\n".encode()
    decoder, found = SseDecoder(), []
    for start in range(0, len(data), 4093):
        found += decoder.feed(data[start : start + 4093])

    assert found + decoder.finish() == [SseEvent("message", payload + "\ntail")]
