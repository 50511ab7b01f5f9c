from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.ai._sse import EventTooLarge, SseDecoder, SseEvent
from whalli.adapters.ai._streaming import (
    CHARS_PER_TOKEN,
    DEFAULT_OUTPUT_TOKENS,
    output_cap_chars,
    reason_of,
)
from whalli.domain.model.chats import GenerationParams, reported_count
from whalli.ports.chat_model import CompletionRequest

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


def test_an_event_larger_than_the_cap_is_refused_and_smaller_ones_pass() -> None:
    decoder = SseDecoder(max_event_chars=100)
    # many events, each under the cap, however much they add up to
    for _ in range(50):
        assert decoder.feed(b"data: " + b"x" * 60 + b"\n\n") == [SseEvent("message", "x" * 60)]
    # one line arriving in pieces, never ending
    decoder.feed(b"data: " + b"y" * 60)
    with pytest.raises(EventTooLarge):
        decoder.feed(b"y" * 60)
    # an event of many data lines
    lines = SseDecoder(max_event_chars=100)
    lines.feed(b"data: " + b"z" * 40 + b"\n")
    with pytest.raises(EventTooLarge):
        lines.feed(b"data: " + b"z" * 40 + b"\ndata: " + b"z" * 40 + b"\n")


def test_token_counts_past_belief_are_no_counts() -> None:
    assert [reported_count(v) for v in (7, 10**9, 10**9 + 1, 10**20, -3, 0, True, "5", None)] == [
        7, 10**9, 0, 0, 0, 0, 0, 0, 0,
    ]  # fmt: skip


def test_a_finish_reason_is_kept_short_and_without_nul() -> None:
    assert reason_of("stop\x00") == "stop"
    assert reason_of("x" * 500) == "x" * 64
    assert (reason_of(None), reason_of(""), reason_of("\x00")) == (None, None, None)
    assert reason_of(3) == "3"


def test_the_output_cap_is_the_models_or_a_default_in_generous_characters() -> None:
    def cap(**fields: object) -> int:
        return output_cap_chars(CompletionRequest(model="m", messages=(), **fields))  # type: ignore[arg-type]

    assert cap() == DEFAULT_OUTPUT_TOKENS * CHARS_PER_TOKEN
    assert cap(max_output_tokens=1000) == 1000 * CHARS_PER_TOKEN
    # a reply's max_tokens is within the model's cap (and thinking counts too): not lower
    assert cap(max_output_tokens=1000, params=GenerationParams(max_tokens=10)) == 32_000
    assert cap(params=GenerationParams(max_tokens=10**6)) == 32 * 10**6
