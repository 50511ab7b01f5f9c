"""LocalStops: a stream of text cut before its first stop sequence, whatever its chunks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.ai._stops import LocalStops, split_stops

pieces = st.lists(st.sampled_from(["a", "b", "\n", " ", "\n\n", "ab\n", "x"]), max_size=12)
stops = st.lists(st.sampled_from(["\n", "\n\n", " \n", "\t", "  "]), min_size=1, max_size=3)


def run(chunks: list[str], sequences: list[str]) -> tuple[str, bool]:
    cut, passed = LocalStops(sequences), []
    for chunk in chunks:
        text, stopped = cut.feed(chunk)
        passed.append(text)
        if stopped:
            return "".join(passed), True
    return "".join(passed) + cut.flush(), False


@given(pieces, stops)
def test_the_text_passed_on_is_the_whole_text_cut_at_the_first_stop(
    chunks: list[str], sequences: list[str]
) -> None:
    whole = "".join(chunks)
    firsts = [i for i in (whole.find(s) for s in sequences) if i >= 0]

    text, stopped = run(chunks, sequences)

    assert stopped is bool(firsts)
    assert text == (whole[: min(firsts)] if firsts else whole)


@given(pieces, stops)
def test_nothing_is_held_back_that_cannot_begin_a_stop(
    chunks: list[str], sequences: list[str]
) -> None:
    cut = LocalStops(sequences)
    seen = ""
    passed = ""
    for chunk in chunks:
        text, stopped = cut.feed(chunk)
        if stopped:
            return
        seen += chunk
        passed += text
        held = seen[len(passed) :]
        assert any(s.startswith(held) for s in sequences) or held == ""
        assert len(held) < max(map(len, sequences))


def test_only_whitespace_sequences_are_kept_apart() -> None:
    assert split_stops(["END", "\n", " ", "\n\nObservation:", ""]) == (
        ["END", "\n\nObservation:"], ["\n", " "],
    )  # fmt: skip
    assert split_stops(None) == ([], [])
    with pytest.raises(ValueError, match="non-empty"):
        LocalStops([""])
