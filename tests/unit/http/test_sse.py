from __future__ import annotations

import re
from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whalli.entrypoints.http.sse import (
    HEADERS,
    MEDIA_TYPE,
    encode_comment,
    encode_event,
    json_event,
)


# --- a parser following WHATWG HTML, "9.2.6 Interpreting an event stream" ---------------------
@dataclass(frozen=True)
class Event:
    type: str
    data: str
    last_event_id: str


@dataclass
class Parsed:
    events: list[Event] = field(default_factory=list)
    retry_ms: int | None = None


def parse(stream: bytes) -> Parsed:
    text = stream.decode("utf-8")
    text = text.removeprefix("\ufeff")  # "UTF-8 decode" drops one leading BOM
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # text after the last line terminator is an incomplete line: never processed
    parsed = Parsed()
    data, event_type, last_id = "", "", ""
    for line in lines:
        if line == "":
            if data == "":
                event_type = ""
                continue
            parsed.events.append(Event(event_type or "message", data.removesuffix("\n"), last_id))
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                last_id = value
        elif name == "retry" and re.fullmatch(r"[0-9]+", value):
            parsed.retry_ms = int(value)
    return parsed  # a pending event at the end of the stream is discarded, as the spec says


# --- strategies ---------------------------------------------------------------------------------
TRICKY = ["\r", "\n", "\r\n", "\n\r", ":", " ", "data:", "data: x", ": ping", "id: 1", "\ufeff"]
TRICKY += ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\0", "é", "日本", "🐳"]
any_text = st.lists(st.one_of(st.text(), st.sampled_from(TRICKY))).map("".join)
single_line = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"))
event_ids = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n\0"))


# --- properties ---------------------------------------------------------------------------------
def as_received(text: str) -> str:
    """SSE clients join data lines with LF: CRLF and CR arrive as LF, nothing else changes."""
    return re.sub(r"\r\n|\r", "\n", text)


@given(any_text)
def test_any_text_survives_framing_with_only_its_line_breaks_normalised(text: str) -> None:
    assert parse(encode_event(data=text)).events == [Event("message", as_received(text), "")]


@given(any_text)
def test_any_text_survives_a_json_event_exactly(text: str) -> None:
    (event,) = parse(json_event("token", {"delta": text})).events

    assert msgspec.json.decode(event.data) == {"delta": text}


def test_line_breaks_in_raw_data_arrive_as_line_feeds() -> None:
    events = parse(encode_event(data="a\r\nb\rc\nd\n\ndata: e\n: f")).events

    assert events == [Event("message", "a\nb\nc\nd\n\ndata: e\n: f", "")]


@given(any_text)
def test_an_event_never_contains_a_bare_carriage_return(text: str) -> None:
    assert b"\r" not in encode_event(data=text)


@given(data=any_text, event=single_line, id=event_ids)
def test_event_names_and_ids_round_trip(data: str, event: str, id: str) -> None:
    events = parse(encode_event(data=data, event=event, id=id)).events

    assert events == [Event(event or "message", as_received(data), id)]


@given(st.integers(min_value=0, max_value=10**12))
def test_the_reconnection_time_round_trips(retry_ms: int) -> None:
    parsed = parse(encode_event(data="x", retry_ms=retry_ms))

    assert parsed.retry_ms == retry_ms
    assert parsed.events == [Event("message", "x", "")]


event_specs = st.tuples(st.none() | single_line, any_text, st.none() | event_ids, st.booleans())


@given(st.lists(event_specs, max_size=20))
def test_a_stream_of_events_and_heartbeats_parses_back_to_the_same_events(
    specs: list[tuple[str | None, str, str | None, bool]],
) -> None:
    stream = bytearray()
    expected: list[Event] = []
    last_id = ""
    for event, data, id, heartbeat_first in specs:
        if heartbeat_first:
            stream += encode_comment()
        stream += encode_event(data=data, event=event, id=id)
        last_id = id if id is not None else last_id  # a client keeps the last id it saw
        expected.append(Event(event or "message", as_received(data), last_id))

    assert parse(bytes(stream)).events == expected


@given(st.lists(st.text()), event_ids)
def test_json_events_carry_their_payload(deltas: list[str], id: str) -> None:
    payload = {"delta": "".join(deltas), "parts": deltas}

    events = parse(json_event("token", payload, id=id)).events

    assert len(events) == 1
    assert events[0].type == "token"
    assert events[0].last_event_id == id
    assert msgspec.json.decode(events[0].data) == payload


def test_json_events_encode_structs() -> None:
    class Done(msgspec.Struct):
        message_id: str
        cached: bool

    events = parse(json_event("done", Done(message_id="m1", cached=True))).events

    assert events == [Event("done", '{"message_id":"m1","cached":true}', "")]


@given(any_text)
def test_comments_are_ignored_by_clients_whatever_their_text(text: str) -> None:
    stream = encode_comment(text) + encode_event(data="after")

    assert parse(stream).events == [Event("message", "after", "")]


def test_the_heartbeat_is_a_ping_comment() -> None:
    assert encode_comment() == b": ping\n\n"


def test_an_empty_data_string_is_still_an_event() -> None:
    assert parse(encode_event(data="")).events == [Event("message", "", "")]


def test_the_stream_headers_disable_caching_and_proxy_buffering() -> None:
    assert MEDIA_TYPE == "text/event-stream"
    assert HEADERS == {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n"])
def test_an_id_with_a_line_break_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="SSE id cannot contain a line break"):
        encode_event(data="x", id=bad)


def test_an_id_with_a_null_character_is_refused() -> None:
    with pytest.raises(ValueError, match="U\\+0000"):
        encode_event(data="x", id="a\0b")


@pytest.mark.parametrize("bad", ["tok\nen", "tok\ren"])
def test_an_event_name_with_a_line_break_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="SSE event cannot contain a line break"):
        encode_event(data="x", event=bad)


@pytest.mark.parametrize("field", ["data", "event", "id"])
def test_text_that_is_not_valid_unicode_is_refused(field: str) -> None:
    bad = "a\ud800b"
    with pytest.raises(ValueError, match="lone surrogate"):
        encode_event(
            data=bad if field == "data" else "x",
            event=bad if field == "event" else None,
            id=bad if field == "id" else None,
        )


def test_a_negative_reconnection_time_is_refused() -> None:
    with pytest.raises(ValueError, match="retry_ms must be a non-negative integer"):
        encode_event(data="x", retry_ms=-1)
