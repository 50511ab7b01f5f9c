"""The lean Redis client's RESP2 codec and its connection's bookkeeping, without a server:
commands framed as Redis reads them, answers parsed however the bytes are split, answers
matched to their commands in order, errors as redis-py raises them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis import exceptions as rx

from whalli.adapters.redis.resp import _Connection, _Incomplete, encode_command, parse_reply


def resp(value: Any) -> bytes:
    """``value`` as Redis would answer it (test's own encoder, independent of the client's)."""
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":" + str(value).encode() + b"\r\n"
    if isinstance(value, bytes):
        return b"$" + str(len(value)).encode() + b"\r\n" + value + b"\r\n"
    return b"*" + str(len(value)).encode() + b"\r\n" + b"".join(resp(v) for v in value)


replies = st.recursive(
    st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.binary(max_size=64),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert encode_command(("SET", b"k\r\n", 5, "é")) == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n5\r\n$2\r\n\xc3\xa9\r\n"
    )


def test_an_argument_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError):
        encode_command(("SET", "k", True))
    with pytest.raises(TypeError):
        encode_command(("SET", "k", None))  # type: ignore[arg-type]


@given(replies)
def test_any_reply_parses_back_to_itself(value: Any) -> None:
    data = resp(value)
    assert parse_reply(data, 0) == (value, len(data))


@given(replies)
def test_a_reply_cut_anywhere_is_incomplete_not_wrong(value: Any) -> None:
    data = resp(value)
    for cut in range(len(data)):
        with pytest.raises(_Incomplete):
            parse_reply(data[:cut], 0)


def test_simple_strings_and_nil_arrays_parse() -> None:
    assert parse_reply(b"+OK\r\n", 0) == (b"OK", 5)
    assert parse_reply(b"*-1\r\n", 0) == (None, 5)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (b"-NOSCRIPT No matching script.\r\n", rx.NoScriptError),
        (b"-WRONGPASS invalid username-password pair\r\n", rx.AuthenticationError),
        (b"-NOAUTH Authentication required.\r\n", rx.AuthenticationError),
        (b"-LOADING Redis is loading\r\n", rx.BusyLoadingError),
        (b"-READONLY You can't write against a read only replica.\r\n", rx.ReadOnlyError),
        (b"-OOM command not allowed\r\n", rx.OutOfMemoryError),
        (b"-ERR unknown command\r\n", rx.ResponseError),
        (b"-WRONGTYPE Operation against a key\r\n", rx.ResponseError),
    ],
)
def test_an_error_reply_is_redis_pys_exception(line: bytes, kind: type[Exception]) -> None:
    error, _ = parse_reply(line, 0)
    assert type(error) is kind
    assert str(error) == line[1:-2].decode()


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


@given(st.lists(replies, min_size=1, max_size=6), st.data())
def test_answers_resolve_their_commands_in_order_however_the_bytes_arrive(
    values: list[Any], data: st.DataObject
) -> None:
    loop = asyncio.new_event_loop()
    try:
        connection = _Connection(loop, timeout=60.0)
        transport = _Transport()
        connection.connection_made(transport)
        futures = [connection.send(encode_command(("GET", str(i)))) for i in range(len(values))]
        stream = b"".join(resp(v) for v in values)
        cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=8)))
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            connection.data_received(stream[start:end])
        assert [f.result() for f in futures] == values
        assert not transport.aborted
        connection._fail(rx.ConnectionError("done"))  # cancels the deadline timer
    finally:
        loop.close()


@pytest.fixture
def wire() -> Iterator[tuple[_Connection, _Transport]]:
    """A connection on a recording transport, in a loop of its own (never run: the tests
    feed the connection's callbacks by hand)."""
    loop = asyncio.new_event_loop()
    connection, transport = _Connection(loop, timeout=60.0), _Transport()
    connection.connection_made(transport)
    try:
        yield connection, transport
    finally:
        connection._fail(rx.ConnectionError("done"))  # cancels the deadline timer
        loop.close()


def test_a_cancelled_callers_answer_is_dropped_and_the_next_gets_its_own(
    wire: tuple[_Connection, _Transport],
) -> None:
    connection, _ = wire
    first = connection.send(encode_command(("GET", "a")))
    second = connection.send(encode_command(("GET", "b")))
    first.cancel()
    connection.data_received(resp(b"A") + resp(b"B"))
    assert second.result() == b"B"


def test_an_error_answer_fails_its_own_command_only(wire: tuple[_Connection, _Transport]) -> None:
    connection, _ = wire
    failing = connection.send(encode_command(("EVALSHA", "x", 0)))
    fine = connection.send(encode_command(("GET", "b")))
    connection.data_received(b"-NOSCRIPT No matching script.\r\n" + resp(b"B"))
    assert isinstance(failing.exception(), rx.NoScriptError)
    assert fine.result() == b"B"


def test_a_malformed_answer_closes_the_connection_and_fails_what_waits(
    wire: tuple[_Connection, _Transport],
) -> None:
    connection, transport = wire
    waiting = connection.send(encode_command(("GET", "a")))
    connection.data_received(b"?what\r\n")
    assert isinstance(waiting.exception(), rx.ConnectionError)
    assert transport.aborted
    assert connection.closed
    with pytest.raises(rx.ConnectionError):
        connection.send(encode_command(("GET", "a")))


def test_an_answer_to_no_command_closes_the_connection(
    wire: tuple[_Connection, _Transport],
) -> None:
    connection, transport = wire
    connection.data_received(resp(b"unasked"))
    assert transport.aborted
    assert connection.closed


def test_a_transaction_waits_for_its_last_answer_only(wire: tuple[_Connection, _Transport]) -> None:
    connection, _ = wire
    exec_answer = connection.send(b"", answers=4)  # MULTI, SET, SET, EXEC
    connection.data_received(b"+OK\r\n+QUEUED\r\n+QUEUED\r\n")
    assert not exec_answer.done()
    connection.data_received(b"*2\r\n+OK\r\n+OK\r\n")
    assert exec_answer.result() == [b"OK", b"OK"]


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ValueError, match="needs at least its name"):
        encode_command(())
