"""An emoji that a proxy split into two lone surrogate halves (two deltas) is whole again; a
half left alone is U+FFFD; whatever passes on is valid text."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.adapters.ai._halves import SurrogateJoiner, edge_halves_kept
from whalli.adapters.ai._streaming import StreamPolicy, stream_with_retries
from whalli.domain.model.chats import TokenUsage
from whalli.domain.model.errors import ProviderError
from whalli.ports.chat_model import (
    StreamDelta,
    StreamEnd,
    StreamEvent,
    StreamReasoning,
    ToolCallDelta,
)

END = StreamEnd(finish_reason="stop", usage=TokenUsage())
ONCE = StreamPolicy(max_attempts=1)


def utf16_pieces(text: str, cuts: list[int]) -> list[str]:
    """``text`` cut at UTF-16 code unit positions, as a proxy slicing JavaScript strings
    would: each piece as JSON would decode it (lone halves where a cut split a pair)."""
    units = text.encode("utf-16-le")
    bounds = sorted({0, *(2 * c for c in cuts if 0 < 2 * c < len(units)), len(units)})
    return [units[a:b].decode("utf-16-le", "surrogatepass") for a, b in itertools.pairwise(bounds)]


def passed(joiner: SurrogateJoiner, events: list[StreamEvent]) -> list[StreamEvent]:
    return [out for event in events for out in joiner.events(event)]


def text_of(events: list[StreamEvent], kind: type = StreamDelta) -> str:
    return "".join(e.text for e in events if isinstance(e, kind))  # type: ignore[attr-defined]


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])), st.lists(st.integers(0, 60)))
def test_text_cut_anywhere_by_utf16_units_comes_out_whole_and_valid(
    text: str, cuts: list[int]
) -> None:
    deltas: list[StreamEvent] = [
        StreamDelta(text=edge_halves_kept(p)) for p in utf16_pieces(text, cuts) if p
    ]
    out = passed(SurrogateJoiner(), [*deltas, END])

    assert text_of(out) == text
    assert out[-1] == END
    for event in out[:-1]:
        assert isinstance(event, StreamDelta)
        assert event.text  # no empty delta passes on
        event.text.encode()  # valid UTF-8


def test_text_and_reasoning_and_each_tool_call_are_joined_apart() -> None:
    out = passed(
        SurrogateJoiner(),
        [
            StreamReasoning(text="think \ud83e"),
            StreamDelta(text="say \ud83d"),
            ToolCallDelta(index=0, id="c1", name="f", arguments='{"e": "\ud83c'),
            StreamReasoning(text="\udd14"),
            ToolCallDelta(index=0, arguments='\udf89"}'),
            StreamDelta(text="\ude00!"),
            END,
        ],
    )

    assert text_of(out) == "say \U0001f600!"
    assert text_of(out, StreamReasoning) == "think \U0001f914"
    arguments = "".join(e.arguments for e in out if isinstance(e, ToolCallDelta))
    assert arguments == '{"e": "\U0001f389"}'
    assert [e.id for e in out if isinstance(e, ToolCallDelta)] == ["c1", None]


def test_a_half_left_alone_is_a_replacement_character() -> None:
    out = passed(
        SurrogateJoiner(),
        [
            StreamDelta(text="\ude00a"),  # a low half with nothing before it
            StreamDelta(text="b \ud83d"),  # a high half, then no low one
            StreamDelta(text="c"),
            StreamDelta(text="d \ud83d"),  # a high half the stream ends on
            END,
        ],
    )

    assert text_of(out) == "\ufffda" + "b " + "\ufffdc" + "d " + "\ufffd"
    assert out[-1] == END


def test_ascii_deltas_pass_on_as_they_are() -> None:
    delta = StreamDelta(text="plain")
    assert SurrogateJoiner().events(delta) == (delta,)


async def test_a_half_held_when_the_stream_fails_is_passed_on_before_the_error() -> None:
    """(found by a hunt: the half was dropped) the caller keeps the reply's text so far."""

    async def failing() -> AsyncGenerator[StreamEvent, None]:
        yield StreamDelta(text="ab\ud83d")
        raise ProviderError("cut", provider="p", kind="stream_cut")

    received: list[StreamEvent] = []

    async def read() -> None:
        async for event in stream_with_retries(failing, provider="p", policy=ONCE):
            received.append(event)

    with pytest.raises(ProviderError):
        await read()

    assert text_of(received) == "ab\ufffd"


def test_a_half_waits_across_other_channels_and_ends_as_a_replacement() -> None:
    """Kept by choice: a server may send reasoning and text in one chunk, so a half of one may
    be followed by the other's piece before its own; one never completed is U+FFFD at the end."""
    call = ToolCallDelta(index=0, id="c", name="f", arguments="{}")
    out = passed(SurrogateJoiner(), [StreamDelta(text="a\ud83d"), call, END])

    assert out == [StreamDelta(text="a"), call, StreamDelta(text="\ufffd"), END]
