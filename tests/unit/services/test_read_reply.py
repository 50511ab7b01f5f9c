"""Reading a reply for one SSE client: its events, heartbeats, and the end of a reply whose
generator died."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.replies import DoneEvent, ErrorEvent, ReplyEvent, TokenEvent
from whalli.domain.services.chat.read_reply import HEARTBEAT, ReadReplyHandler

TTL = 600
HEARTBEAT_S = 0.01  # every silence in these tests is a heartbeat's worth


class UnansweringStream(InMemoryReplyStream):
    """A store that cannot say whether the reply is still generated."""

    async def producing(self, session_id: str) -> bool:
        raise ServiceUnavailable("redis is down")


@pytest.fixture
def stream() -> InMemoryReplyStream:
    return InMemoryReplyStream(ManualClock())


@pytest.fixture
def session_id() -> str:
    return uuid.uuid4().hex


def done() -> DoneEvent:
    return DoneEvent(
        message_id=uuid.uuid4(), cached=False, prompt_tokens=1, completion_tokens=2,
        finish_reason="stop", cost_usd=0.0, status="complete",
    )  # fmt: skip


async def started(stream: InMemoryReplyStream, session_id: str, *deltas: str) -> list[str]:
    await stream.begin(session_id, TTL)
    return [await stream.publish(session_id, TokenEvent(delta=d), TTL) for d in deltas]


def events_of(
    stream: InMemoryReplyStream, session_id: str, after: str | None = None
) -> AsyncIterator[list[tuple[str, ReplyEvent]] | None]:
    return ReadReplyHandler(stream, heartbeat_s=HEARTBEAT_S).events(session_id, after)


async def everything(
    items: AsyncIterator[list[tuple[str, ReplyEvent]] | None], limit: int = 10
) -> list[list[tuple[str, ReplyEvent]] | None]:
    """The items until the iteration ends, or the first ``limit`` (a reader that never ends)."""
    seen: list[list[tuple[str, ReplyEvent]] | None] = []
    async for item in items:
        seen.append(item)
        if len(seen) == limit:
            break
    return seen


def after(event_id: str) -> str:
    """The id just after ``event_id`` (a stream id ``ms-seq``)."""
    ms, seq = event_id.split("-")
    return f"{ms}-{int(seq) + 1}"


async def until_heartbeats(
    reader: AsyncIterator[list[tuple[str, ReplyEvent]] | None], count: int
) -> list[list[tuple[str, ReplyEvent]] | None]:
    """The items of a reader that should stay open, up to its ``count``-th heartbeat."""
    seen: list[list[tuple[str, ReplyEvent]] | None] = []
    async for item in reader:
        seen.append(item)
        if seen.count(HEARTBEAT) == count:
            break
    await reader.aclose()  # type: ignore[attr-defined]
    return seen


async def test_a_reader_of_an_abandoned_reply_gets_what_arrived_then_an_interrupted_error(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    ids = await started(stream, session_id, "Hel", "lo")
    stream.abandon(session_id)

    items = await everything(events_of(stream, session_id))

    assert items[0] == [(ids[0], TokenEvent(delta="Hel")), (ids[1], TokenEvent(delta="lo"))]
    assert items[1] is HEARTBEAT
    [(last_id, last)] = items[-1] or []
    assert isinstance(last, ErrorEvent)
    assert last.code == "reply_interrupted"
    assert "interrupted" in last.message
    assert last_id == after(ids[1])  # its own id: resuming after it misses no real event
    assert len(items) == 3
    reader = ReadReplyHandler(stream, heartbeat_s=HEARTBEAT_S)
    assert await reader.ended_at(session_id, last_id) is True  # told to stop: 204
    assert await reader.ended_at(session_id, ids[1]) is False  # not seen yet: sent again


async def test_a_reader_resuming_an_abandoned_reply_gets_the_error_with_an_id_of_its_own(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    ids = await started(stream, session_id, "a", "b")
    stream.abandon(session_id)

    items = await everything(events_of(stream, session_id, after=ids[1]))

    assert items[0] is HEARTBEAT
    assert [(i, type(e), getattr(e, "code", None)) for i, e in items[1] or []] == [
        (after(ids[1]), ErrorEvent, "reply_interrupted")
    ]


async def test_an_abandoned_reply_with_no_event_ends_with_an_error_that_resumes_from_the_start(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    await started(stream, session_id)
    stream.abandon(session_id)

    items = await everything(events_of(stream, session_id))

    assert items[0] is HEARTBEAT
    [(error_id, error)] = items[1] or []
    assert isinstance(error, ErrorEvent)
    assert error.code == "reply_interrupted"
    assert error_id == "0-1"
    assert await stream.read(session_id, error_id, block_ms=0) == []
    reader = ReadReplyHandler(stream, heartbeat_s=HEARTBEAT_S)
    assert await reader.ended_at(session_id, error_id) is True


async def test_a_live_but_silent_reply_keeps_getting_heartbeats_and_never_the_error(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    ids = await started(stream, session_id, "thinking")
    seen = await until_heartbeats(events_of(stream, session_id), 3)

    assert seen == [[(ids[0], TokenEvent(delta="thinking"))], HEARTBEAT, HEARTBEAT, HEARTBEAT]


async def test_a_store_that_cannot_say_keeps_an_abandoned_looking_reply_open(
    session_id: str,
) -> None:
    stream = UnansweringStream(ManualClock())
    await started(stream, session_id, "x")
    stream.abandon(session_id)
    seen = await until_heartbeats(events_of(stream, session_id), 3)

    assert seen[1:] == [HEARTBEAT, HEARTBEAT, HEARTBEAT]


async def test_a_final_event_arriving_as_the_producer_goes_is_delivered_instead_of_the_error(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    ids = await started(stream, session_id, "a")
    reader = events_of(stream, session_id, after=ids[0])

    assert await anext(reader) is HEARTBEAT
    # The silence ended with the reply: its final event is in, and nobody produces it any more.
    final = done()
    final_id = await stream.publish(session_id, final, TTL)
    assert not await stream.producing(session_id)

    assert await everything(reader) == [[(final_id, final)]]


async def test_tokens_that_arrive_as_the_producer_goes_are_delivered_before_the_error(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    ids = await started(stream, session_id, "a")
    reader = events_of(stream, session_id, after=ids[0])

    assert await anext(reader) is HEARTBEAT
    late = await stream.publish(session_id, TokenEvent(delta="late"), TTL)
    stream.abandon(session_id)

    rest = await everything(reader)

    assert rest[0] == [(late, TokenEvent(delta="late"))]
    assert rest[1] is HEARTBEAT
    [(error_id, error)] = rest[2] or []
    assert (error_id, getattr(error, "code", None)) == (after(late), "reply_interrupted")
    assert len(rest) == 3


async def test_producing_lasts_from_begin_to_the_final_event(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    assert not await stream.producing(session_id)
    await started(stream, session_id, "a")
    assert await stream.producing(session_id)

    await stream.publish(session_id, done(), TTL)

    assert not await stream.producing(session_id)


async def test_the_final_event_is_told_apart_from_the_others(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    ids = await started(stream, session_id, "Hel", "lo")
    final = await stream.publish(session_id, done(), TTL)
    reader = ReadReplyHandler(stream, heartbeat_s=HEARTBEAT_S)

    assert await reader.ended_at(session_id, final) is True
    assert [await reader.ended_at(session_id, i) for i in ids] == [False, False]
    assert await reader.ended_at(session_id, "1-1") is False  # not an id of this stream
    assert await reader.ended_at(session_id, after(final)) is True  # past the end
    assert await reader.ended_at(session_id, "99999999999999-0") is True
    # a session with nothing stored that nobody generates has nothing more to give
    assert await reader.ended_at(uuid.uuid4().hex, final) is True


async def test_an_id_past_a_live_reply_s_events_is_not_its_end(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    ids = await started(stream, session_id, "Hel", "lo")
    reader = ReadReplyHandler(stream, heartbeat_s=HEARTBEAT_S)

    assert await reader.ended_at(session_id, ids[-1]) is False
    assert await reader.ended_at(session_id, after(ids[-1])) is False  # still generating


async def test_a_reader_resuming_after_the_final_event_ends_without_an_error(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    await started(stream, session_id, "Hel")
    final = await stream.publish(session_id, done(), TTL)

    items = await everything(events_of(stream, session_id, after=final))

    assert items == [HEARTBEAT]  # a heartbeat of silence, then the end: nothing was lost


class BlinkingStream(InMemoryReplyStream):
    """A store whose reads fail ``failures`` times before it answers again."""

    def __init__(self, clock: ManualClock, failures: int) -> None:
        super().__init__(clock)
        self.failures = failures

    async def read(self, *args: object, **kwargs: object) -> list[tuple[str, ReplyEvent]]:
        if self.failures > 0:
            self.failures -= 1
            raise ServiceUnavailable("redis is down")
        return await super().read(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_reader_rides_out_a_store_that_blinks_and_gets_everything(
    session_id: str,
) -> None:
    stream = BlinkingStream(ManualClock(), failures=3)
    ids = await started(stream, session_id, "one", "two")
    final = done()
    final_id = await stream.publish(session_id, final, TTL)
    reader = ReadReplyHandler(stream, heartbeat_s=HEARTBEAT_S, retry_s=0.001)

    seen = await everything(reader.events(session_id, None))

    # a heartbeat for each failed read, then the reply whole
    assert seen == [
        HEARTBEAT, HEARTBEAT, HEARTBEAT,
        [(ids[0], TokenEvent(delta="one")), (ids[1], TokenEvent(delta="two")), (final_id, final)],
    ]  # fmt: skip


async def test_a_reader_ends_without_a_final_event_when_the_store_stays_away(
    session_id: str,
) -> None:
    stream = BlinkingStream(ManualClock(), failures=10**6)
    await started(stream, session_id, "one")
    reader = ReadReplyHandler(stream, heartbeat_s=HEARTBEAT_S, outage_s=0.05, retry_s=0.01)

    seen = await everything(reader.events(session_id, None), limit=1000)

    assert seen  # heartbeats while it waited
    assert all(item is HEARTBEAT for item in seen)
    assert len(seen) < 1000  # and then it ended


async def test_a_reader_renews_its_lease_every_heartbeat_while_it_reads(session_id: str) -> None:
    """The lease (three heartbeats) would end after two of the store's clock advances below;
    the reader renews it about once a heartbeat, so it keeps counting, and leaves at the end."""
    clock = ManualClock()
    stream = InMemoryReplyStream(clock)
    await started(stream, session_id, "thinking")
    reader = ReadReplyHandler(stream, heartbeat_s=0.05).events(session_id, None)
    counts: list[int] = []
    for _ in range(6):
        await anext(reader)  # the token, then heartbeats (each a heartbeat's wait)
        counts.append((await stream.readers_of([session_id]))[session_id])
        clock.advance(0.1)  # two of these without a renewal end the lease
    await reader.aclose()

    assert counts == [1] * 6
    assert await stream.readers_of([session_id]) == {session_id: 0}


async def test_an_untracked_reader_is_never_counted(
    stream: InMemoryReplyStream, session_id: str
) -> None:
    await started(stream, session_id, "thinking")
    reader = ReadReplyHandler(stream, heartbeat_s=0.05, track_readers=False).events(
        session_id, None
    )
    await anext(reader)
    assert await stream.readers_of([session_id]) == {session_id: 0}
    await reader.aclose()
