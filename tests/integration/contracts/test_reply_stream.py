"""Contract of ReplyStream (the per-session log SSE clients read): in memory, on Redis, and
relayed (this process's replies served from memory, written behind to Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence

import pytest
from redis.asyncio import Redis

from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.adapters.redis.client import create_redis
from whalli.adapters.redis.reply_relay import RelayedReplyStream
from whalli.adapters.redis.reply_stream import RedisReplyStream
from whalli.adapters.redis.resp import RespClient
from whalli.domain.model.errors import InvalidInput, ServiceUnavailable
from whalli.domain.model.replies import DoneEvent, ErrorEvent, ReplyEvent, TokenEvent
from whalli.domain.services.chat.read_reply import HEARTBEAT, ReadReplyHandler
from whalli.ports.reply_stream import ReplyStream

Elapse = Callable[[float], Awaitable[None]]
TTL = 600
# Long enough that a wake-up never races the deadline; the tests never wait for it to pass.
LONG_BLOCK_MS = 10_000


@pytest.fixture(params=["fake", "real", "relayed", "lean"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def relayed_stream(redis_client: Redis, redis_prefix: str) -> AsyncIterator[ReplyStream]:
    relay = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix))
    yield relay
    await relay.aclose()  # its writes behind and its beats end before the client closes


@pytest.fixture
async def lean_relayed_stream(
    redis_client: Redis, lean_redis: RespClient, redis_prefix: str
) -> AsyncIterator[ReplyStream]:
    """As the app wires it: relayed, its scripted writes through the lean client."""
    relay = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix, lean=lean_redis))
    yield relay
    await relay.aclose()


@pytest.fixture
def reply_stream(
    backend: str, clock: ManualClock, request: pytest.FixtureRequest, redis_prefix: str
) -> ReplyStream:
    if backend == "fake":
        return InMemoryReplyStream(clock)
    if backend == "relayed":
        relay: ReplyStream = request.getfixturevalue("relayed_stream")
        return relay
    if backend == "lean":
        lean: ReplyStream = request.getfixturevalue("lean_relayed_stream")
        return lean
    client: Redis = request.getfixturevalue("redis_client")
    return RedisReplyStream(client, prefix=redis_prefix)


@pytest.fixture
def session_id() -> str:
    return uuid.uuid4().hex


def tokens(*deltas: str) -> list[ReplyEvent]:
    return [TokenEvent(delta=d) for d in deltas]


async def publish_all(stream: ReplyStream, session_id: str, events: list[ReplyEvent]) -> list[str]:
    return [await stream.publish(session_id, e, ttl_seconds=TTL) for e in events]


async def test_events_are_read_back_in_order_with_their_ids(
    reply_stream: ReplyStream, session_id: str
) -> None:
    done = DoneEvent(
        message_id=uuid.uuid4(), cached=False, prompt_tokens=3, completion_tokens=2,
        finish_reason="stop", cost_usd=0.25, status="complete",
    )  # fmt: skip
    events = [*tokens("Hel", "lo", " \r\ndata: x", "🐳"), done]
    ids = await publish_all(reply_stream, session_id, events)

    read = await reply_stream.read(session_id, None, block_ms=0)

    assert read == list(zip(ids, events, strict=True))
    assert len(set(ids)) == len(ids)


async def test_reading_after_an_id_resumes_exactly_after_it(
    reply_stream: ReplyStream, session_id: str
) -> None:
    ids = await publish_all(reply_stream, session_id, tokens("a", "b", "c", "d"))

    read = await reply_stream.read(session_id, ids[1], block_ms=0)

    assert read == [(ids[2], TokenEvent(delta="c")), (ids[3], TokenEvent(delta="d"))]
    assert await reply_stream.read(session_id, ids[3], block_ms=0) == []


async def test_count_bounds_one_read_and_the_next_read_continues(
    reply_stream: ReplyStream, session_id: str
) -> None:
    ids = await publish_all(reply_stream, session_id, tokens(*"abcde"))

    first = await reply_stream.read(session_id, None, block_ms=0, count=2)
    rest = await reply_stream.read(session_id, first[-1][0], block_ms=0, count=10)

    assert [i for i, _ in first + rest] == ids


async def test_an_unknown_session_reads_nothing_without_waiting_when_block_is_zero(
    reply_stream: ReplyStream, session_id: str
) -> None:
    assert await reply_stream.read(session_id, None, block_ms=0) == []


async def test_a_short_block_with_nothing_published_returns_nothing(
    reply_stream: ReplyStream, session_id: str
) -> None:
    assert await reply_stream.read(session_id, None, block_ms=50) == []


async def test_a_blocked_reader_wakes_when_an_event_is_published(
    reply_stream: ReplyStream, session_id: str
) -> None:
    [first] = await publish_all(reply_stream, session_id, tokens("first"))
    reader = asyncio.create_task(reply_stream.read(session_id, first, block_ms=LONG_BLOCK_MS))
    await asyncio.sleep(0.05)  # let the reader block (it would also see an earlier event)

    second = await reply_stream.publish(session_id, TokenEvent(delta="second"), TTL)

    assert await asyncio.wait_for(reader, LONG_BLOCK_MS / 1000) == [
        (second, TokenEvent(delta="second"))
    ]


async def test_two_readers_see_the_same_events(reply_stream: ReplyStream, session_id: str) -> None:
    readers = [
        asyncio.create_task(reply_stream.read(session_id, None, block_ms=LONG_BLOCK_MS))
        for _ in range(2)
    ]
    await asyncio.sleep(0.05)
    ids = await publish_all(reply_stream, session_id, tokens("only"))

    results = await asyncio.wait_for(asyncio.gather(*readers), LONG_BLOCK_MS / 1000)

    assert results[0] == results[1] == [(ids[0], TokenEvent(delta="only"))]


async def test_sessions_do_not_see_each_others_events(reply_stream: ReplyStream) -> None:
    one, other = uuid.uuid4().hex, uuid.uuid4().hex
    await publish_all(reply_stream, one, tokens("mine"))

    assert await reply_stream.read(other, None, block_ms=0) == []


@pytest.mark.parametrize("bad", ["", "abc", "1-2-3", "-1", "1-", "٣-0", "99999999999999999999-0"])
async def test_a_malformed_event_id_is_invalid_input(
    reply_stream: ReplyStream, session_id: str, bad: str
) -> None:
    with pytest.raises(InvalidInput, match="not a reply event id"):
        await reply_stream.read(session_id, bad, block_ms=0)


async def test_readers_are_counted_as_they_join_and_leave(
    reply_stream: ReplyStream, session_id: str
) -> None:
    other = uuid.uuid4().hex

    async def counts() -> dict[str, int]:
        return await reply_stream.readers_of([session_id, other])

    assert await counts() == {session_id: 0, other: 0}
    await reply_stream.reader_joined(session_id, "tab-1", 60)
    await reply_stream.reader_joined(session_id, "tab-2", 60)
    await reply_stream.reader_joined(session_id, "tab-2", 60)  # a renewal: still one reader
    await reply_stream.reader_joined(other, "tab-1", 60)
    assert await counts() == {session_id: 2, other: 1}
    await reply_stream.reader_left(session_id, "tab-1")
    assert await counts() == {session_id: 1, other: 1}
    await reply_stream.reader_left(session_id, "tab-2")
    await reply_stream.reader_left(session_id, "tab-2")  # a stray leave never counts below zero
    await reply_stream.reader_left(session_id, "never-joined")
    assert await counts() == {session_id: 0, other: 1}
    assert await reply_stream.readers_of([]) == {}


async def test_a_reader_that_never_leaves_stops_counting_when_its_lease_ends(
    reply_stream: ReplyStream, session_id: str, elapse: Elapse
) -> None:
    """A reader whose process was killed never says it left: its lease runs out, while a
    reader that renews its lease keeps counting."""
    await reply_stream.reader_joined(session_id, "killed", 0.5)
    await reply_stream.reader_joined(session_id, "alive", 0.5)
    assert await reply_stream.readers_of([session_id]) == {session_id: 2}
    await elapse(0.3)
    await reply_stream.reader_joined(session_id, "alive", 0.5)  # renewed
    await elapse(0.35)
    assert await reply_stream.readers_of([session_id]) == {session_id: 1}
    await elapse(0.3)
    assert await reply_stream.readers_of([session_id]) == {session_id: 0}


async def test_a_stop_request_is_seen_by_the_session_only(
    reply_stream: ReplyStream, session_id: str
) -> None:
    others = [uuid.uuid4().hex for _ in range(3)]
    assert await reply_stream.stops_requested([session_id, *others]) == set()

    await reply_stream.request_stop(session_id, ttl_seconds=TTL)

    assert await reply_stream.stops_requested([*others, session_id]) == {session_id}
    assert await reply_stream.stops_requested(others) == set()
    assert await reply_stream.stops_requested([]) == set()


async def test_many_sessions_are_polled_at_once(reply_stream: ReplyStream) -> None:
    """More sessions than one MGET batch of the Redis store: every one is answered."""
    sessions = [uuid.uuid4().hex for _ in range(2500)]
    stopped = set(sessions[::7])
    for session in stopped:
        await reply_stream.request_stop(session, ttl_seconds=TTL)
    await reply_stream.reader_joined(sessions[-1], "tab", TTL)

    assert await reply_stream.stops_requested(sessions) == stopped
    readers = await reply_stream.readers_of(sessions)
    assert len(readers) == len(sessions)
    assert readers[sessions[-1]] == 1
    assert sum(readers.values()) == 1


async def test_the_stream_and_its_stop_flag_expire(
    reply_stream: ReplyStream, session_id: str, elapse: Elapse
) -> None:
    old_id = await reply_stream.publish(session_id, TokenEvent(delta="gone"), ttl_seconds=1)
    await reply_stream.request_stop(session_id, ttl_seconds=1)

    await elapse(1.2)

    assert await reply_stream.read(session_id, None, block_ms=0) == []
    assert await reply_stream.stops_requested([session_id]) == set()
    # A stream started again after expiry still resumes correctly after an old id.
    new_id = await reply_stream.publish(session_id, TokenEvent(delta="new"), ttl_seconds=60)
    assert await reply_stream.read(session_id, old_id, block_ms=0) == [
        (new_id, TokenEvent(delta="new"))
    ]


async def test_each_publish_pushes_the_expiry_back(
    reply_stream: ReplyStream, session_id: str, elapse: Elapse
) -> None:
    # 1.5 s of slack on each side, so a loaded machine's late wake-up does not decide it
    await reply_stream.publish(session_id, TokenEvent(delta="a"), ttl_seconds=4)
    await elapse(2.5)
    await reply_stream.publish(session_id, TokenEvent(delta="b"), ttl_seconds=4)
    await elapse(2.5)  # 5 s after "a": gone unless the second publish pushed the expiry back

    assert [e for _, e in await reply_stream.read(session_id, None, block_ms=0)] == tokens("a", "b")


async def test_a_non_positive_ttl_is_refused(reply_stream: ReplyStream, session_id: str) -> None:
    with pytest.raises(ValueError, match="ttl_seconds must be positive"):
        await reply_stream.publish(session_id, TokenEvent(delta="x"), ttl_seconds=0)


# --- Redis specifics ----------------------------------------------------------------------------


async def test_a_published_stream_has_a_ttl_in_redis(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    stream = RedisReplyStream(redis_client, prefix=redis_prefix)
    await stream.publish(session_id, TokenEvent(delta="x"), ttl_seconds=60)

    ttl_ms = await redis_client.pttl(f"{redis_prefix}reply:{session_id}")

    assert 0 < ttl_ms <= 60_000


async def test_a_long_redis_stream_is_never_trimmed(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    """The stream is the whole reply for a late or resuming reader: a reply of more events than
    a MAXLEN would keep must not lose its beginning (published or appended)."""
    stream = RedisReplyStream(redis_client, prefix=redis_prefix)
    for i in range(12_000):
        await stream.publish(session_id, TokenEvent(delta=str(i)), ttl_seconds=60)
    appended = f"{session_id}-appended"
    batch = [(f"1-{i + 1}", TokenEvent(delta=str(i))) for i in range(12_000)]
    await stream.append([(appended, batch)], ttl_seconds=60)

    assert await redis_client.xlen(f"{redis_prefix}reply:{session_id}") == 12_000
    assert await redis_client.xlen(f"{redis_prefix}reply:{appended}") == 12_000
    first = await stream.read(appended, None, block_ms=0)
    assert first[0] == ("1-1", TokenEvent(delta="0"))


async def test_a_block_longer_than_the_socket_timeout_does_not_time_out(
    stack_urls: StackUrls, redis_prefix: str, session_id: str
) -> None:
    async for client in create_redis(stack_urls.redis_url, socket_timeout=0.2):
        stream = RedisReplyStream(client, prefix=redis_prefix)
        reader = asyncio.create_task(stream.read(session_id, None, block_ms=LONG_BLOCK_MS))
        await asyncio.sleep(0.5)  # several socket timeouts' worth of waiting
        event_id = await stream.publish(session_id, TokenEvent(delta="late"), ttl_seconds=60)

        assert await asyncio.wait_for(reader, LONG_BLOCK_MS / 1000) == [
            (event_id, TokenEvent(delta="late"))
        ]


async def test_an_unreadable_entry_reads_as_a_final_error_event(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    key = f"{redis_prefix}reply:{session_id}"
    bad_id = await redis_client.xadd(key, {b"payload": b"\xc1 not msgpack"})
    await redis_client.expire(key, 60)
    stream = RedisReplyStream(redis_client, prefix=redis_prefix)

    [(event_id, event)] = await stream.read(session_id, None, block_ms=0)

    assert event_id == (bad_id.decode() if isinstance(bad_id, bytes) else bad_id)
    assert isinstance(event, ErrorEvent)
    assert event.code == "reply_unreadable"


async def test_an_unreachable_redis_raises_service_unavailable_without_the_password(
    closed_port: int,
) -> None:
    url = f"redis://:stream-s3cret-pw@127.0.0.1:{closed_port}/0"
    async for client in create_redis(url):
        stream = RedisReplyStream(client)
        with pytest.raises(ServiceUnavailable, match=r"^redis: connection failed$") as caught:
            await stream.publish("s", TokenEvent(delta="x"), ttl_seconds=60)
        assert "stream-s3cret-pw" not in str(caught.value)


# --- the relay: local readers from memory, everything written behind to Redis --------------------


class CountingRedisReplyStream(RedisReplyStream):
    """The real adapter, counting its batched writes."""

    writes = 0

    async def append(
        self, batches: Sequence[tuple[str, Sequence[tuple[str, ReplyEvent]]]], ttl_seconds: int
    ) -> None:
        self.writes += 1
        await super().append(batches, ttl_seconds)


def a_done_event() -> DoneEvent:
    return DoneEvent(
        message_id=uuid.uuid4(), cached=False, prompt_tokens=1, completion_tokens=2,
        finish_reason="stop", cost_usd=0.0, status="complete",
    )  # fmt: skip


async def test_a_relayed_reply_is_in_redis_with_the_same_ids_once_its_final_event_is_published(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    redis = RedisReplyStream(redis_client, prefix=redis_prefix)
    relay = RelayedReplyStream(redis)
    await relay.begin(session_id, TTL)
    events = [*tokens("a", "b", "c"), a_done_event()]

    ids = await publish_all(relay, session_id, events)

    assert relay.local_replies == 0  # dropped once it was all in Redis
    assert await redis.read(session_id, None, block_ms=0) == list(zip(ids, events, strict=True))
    # and a reader that resumes there, after an id it got from memory, continues exactly
    assert await relay.read(session_id, ids[1], block_ms=0) == list(
        zip(ids[2:], events[2:], strict=True)
    )


async def test_another_process_reads_a_relayed_reply_from_redis_while_it_is_generated(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    here = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix))
    there = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix))
    await here.begin(session_id, TTL)
    reader = asyncio.create_task(there.read(session_id, None, block_ms=LONG_BLOCK_MS))
    await asyncio.sleep(0.05)

    [first] = await publish_all(here, session_id, tokens("hello"))

    assert await asyncio.wait_for(reader, LONG_BLOCK_MS / 1000) == [
        (first, TokenEvent(delta="hello"))
    ]
    assert here.local_replies == 1
    assert there.local_replies == 0
    await here.aclose()


async def test_a_local_reader_waiting_before_the_first_token_is_woken_from_memory(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    relay = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix))
    await relay.begin(session_id, TTL)
    reader = asyncio.create_task(relay.read(session_id, None, block_ms=LONG_BLOCK_MS))
    await asyncio.sleep(0.05)
    await redis_client.delete(f"{redis_prefix}reply:{session_id}")

    event_id = await relay.publish(session_id, TokenEvent(delta="x"), TTL)

    assert await asyncio.wait_for(reader, LONG_BLOCK_MS / 1000) == [
        (event_id, TokenEvent(delta="x"))
    ]
    await relay.aclose()


async def test_a_reader_here_after_begin_waits_in_memory_not_on_redis(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    relay = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix))
    await relay.begin(session_id, TTL)  # no round trip
    reader = asyncio.create_task(relay.read(session_id, None, block_ms=LONG_BLOCK_MS))
    await asyncio.sleep(0.05)

    event_id = await relay.publish(session_id, TokenEvent(delta="x"), TTL)

    assert await asyncio.wait_for(reader, LONG_BLOCK_MS / 1000) == [
        (event_id, TokenEvent(delta="x"))
    ]
    assert relay.local_replies == 1
    await relay.aclose()


async def test_local_readers_each_wait_their_own_limit(
    relayed_stream: ReplyStream, session_id: str
) -> None:
    # Their limits share one timer: the short one must not wake the long one (nor the long
    # one, armed first, delay the short one).
    await relayed_stream.begin(session_id, TTL)
    patient = asyncio.create_task(relayed_stream.read(session_id, None, block_ms=LONG_BLOCK_MS))
    await asyncio.sleep(0.05)
    async with asyncio.timeout(LONG_BLOCK_MS / 2000):
        assert await relayed_stream.read(session_id, None, block_ms=100) == []
        assert await relayed_stream.read(session_id, None, block_ms=100) == []
    assert not patient.done()

    event_id = await relayed_stream.publish(session_id, TokenEvent(delta="x"), TTL)

    assert await asyncio.wait_for(patient, LONG_BLOCK_MS / 1000) == [
        (event_id, TokenEvent(delta="x"))
    ]


async def test_readers_of_different_replies_each_wait_their_own_limit_on_one_timer(
    relayed_stream: ReplyStream,
) -> None:
    """Every local reply's readers share the relay's one timer: a long limit asked for first
    must not delay a short one of another reply, nor a finished reply stop the others'."""
    patient, hasty, finished = (uuid.uuid4().hex for _ in range(3))
    for session in (patient, hasty, finished):
        await relayed_stream.begin(session, TTL)
    waiting = asyncio.create_task(relayed_stream.read(patient, None, block_ms=LONG_BLOCK_MS))
    leaving = asyncio.create_task(relayed_stream.read(finished, None, block_ms=200))
    await asyncio.sleep(0.05)
    await relayed_stream.publish(finished, DoneEvent(
        message_id=uuid.uuid4(), cached=False, prompt_tokens=1, completion_tokens=1,
        finish_reason="stop", cost_usd=0.0, status="complete",
    ), TTL)  # fmt: skip
    await asyncio.wait_for(leaving, 1.0)

    async with asyncio.timeout(LONG_BLOCK_MS / 2000):
        for _ in range(3):
            assert await relayed_stream.read(hasty, None, block_ms=100) == []
    assert not waiting.done()
    event_id = await relayed_stream.publish(patient, TokenEvent(delta="x"), TTL)
    assert await asyncio.wait_for(waiting, 1.0) == [(event_id, TokenEvent(delta="x"))]


async def test_a_local_reader_that_leaves_does_not_disturb_the_others(
    relayed_stream: ReplyStream, session_id: str
) -> None:
    await relayed_stream.begin(session_id, TTL)
    leaving = asyncio.create_task(relayed_stream.read(session_id, None, block_ms=LONG_BLOCK_MS))
    staying = asyncio.create_task(relayed_stream.read(session_id, None, block_ms=LONG_BLOCK_MS))
    await asyncio.sleep(0.05)
    leaving.cancel()
    await asyncio.wait([leaving])
    assert await relayed_stream.read(session_id, None, block_ms=50) == []  # the timer still runs

    event_id = await relayed_stream.publish(session_id, TokenEvent(delta="x"), TTL)

    assert leaving.cancelled()
    assert await asyncio.wait_for(staying, LONG_BLOCK_MS / 1000) == [
        (event_id, TokenEvent(delta="x"))
    ]


async def test_a_local_reader_of_a_reply_that_expires_here_goes_on_reading_redis(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    relay = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix))
    await relay.begin(session_id, ttl_seconds=1)
    reader = asyncio.create_task(relay.read(session_id, None, block_ms=LONG_BLOCK_MS))
    await asyncio.sleep(1.2)  # past the log's ttl: the next use of the session drops it
    assert await relay.read(session_id, None, block_ms=0) == []

    assert await asyncio.wait_for(reader, LONG_BLOCK_MS / 2000) == []  # woken, not left hanging
    assert relay.local_replies == 0
    await relay.aclose()


async def test_begin_is_harmless_for_every_store(
    reply_stream: ReplyStream, session_id: str
) -> None:
    await reply_stream.begin(session_id, TTL)
    [event_id] = await publish_all(reply_stream, session_id, tokens("a"))

    assert await reply_stream.read(session_id, None, block_ms=0) == [
        (event_id, TokenEvent(delta="a"))
    ]


async def test_replies_published_in_the_same_turn_are_written_in_one_round_trip(
    redis_client: Redis, redis_prefix: str
) -> None:
    redis = CountingRedisReplyStream(redis_client, prefix=redis_prefix)
    relay = RelayedReplyStream(redis)
    sessions = [uuid.uuid4().hex for _ in range(50)]

    # every publish starts in the same event-loop turn
    published = [relay.publish(s, e, TTL) for s in sessions for e in [*tokens("a", "b")]]
    published += [relay.publish(s, a_done_event(), TTL) for s in sessions]
    await asyncio.gather(*published)

    assert redis.writes <= 2
    for session in sessions:
        assert len(await redis.read(session, None, block_ms=0)) == 3


async def test_local_readers_get_the_whole_reply_when_redis_is_down(closed_port: int) -> None:
    async for client in create_redis(f"redis://127.0.0.1:{closed_port}/0"):
        relay = RelayedReplyStream(
            RedisReplyStream(client), retry_every_s=0.05, give_up_after_s=0.3
        )
        first = await relay.publish("s", TokenEvent(delta="still"), TTL)
        reader = asyncio.create_task(relay.read("s", first, block_ms=LONG_BLOCK_MS))
        await asyncio.sleep(0.05)
        second = await relay.publish("s", TokenEvent(delta="here"), TTL)

        assert await asyncio.wait_for(reader, LONG_BLOCK_MS / 1000) == [
            (second, TokenEvent(delta="here"))
        ]
        # returns although Redis never took it, once the relay gave up writing it
        await asyncio.wait_for(relay.publish("s", a_done_event(), TTL), 5)
        assert relay.local_replies == 0


class BlinkingRedisReplyStream(RedisReplyStream):
    """The real adapter, whose first ``failures`` writes fail as if Redis blinked (the
    first after it wrote its batch, as when an answer is lost on the way)."""

    failures = 2

    async def append(
        self, batches: Sequence[tuple[str, Sequence[tuple[str, ReplyEvent]]]], ttl_seconds: int
    ) -> None:
        if self.failures > 0:
            self.failures -= 1
            if self.failures == 0:
                await super().append(batches, ttl_seconds)
            raise ServiceUnavailable("redis: connection failed")
        await super().append(batches, ttl_seconds)


async def test_a_batch_redis_refused_is_written_again_whole_and_in_order(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    blinking = BlinkingRedisReplyStream(redis_client, prefix=redis_prefix)
    relay = RelayedReplyStream(blinking, retry_every_s=0.01)
    try:
        published = [await relay.publish(session_id, e, TTL) for e in tokens("a", "b", "c")]
        final = a_done_event()
        published.append(await relay.publish(session_id, final, TTL))
    finally:
        await relay.aclose()

    assert blinking.failures == 0  # both failures happened, the second after its write
    stored = await RedisReplyStream(redis_client, prefix=redis_prefix).read(
        session_id, None, block_ms=0
    )
    assert [event_id for event_id, _ in stored] == published
    assert stored[-1][1] == final


class DownRedisReplyStream(RedisReplyStream):
    """The real adapter, whose writes fail while ``down`` (or for the next ``failures``);
    ``failed`` is set at each failure."""

    down = False
    failures = 0

    def __init__(self, client: Redis, *, prefix: str) -> None:
        super().__init__(client, prefix=prefix)
        self.failed = asyncio.Event()

    async def append(
        self, batches: Sequence[tuple[str, Sequence[tuple[str, ReplyEvent]]]], ttl_seconds: int
    ) -> None:
        if self.down or self.failures > 0:
            self.failures = max(0, self.failures - 1)
            self.failed.set()
            raise ServiceUnavailable("redis: connection failed")
        await super().append(batches, ttl_seconds)


async def test_a_failure_clock_left_by_a_dropped_reply_does_not_give_up_a_later_write(
    redis_client: Redis, redis_prefix: str
) -> None:
    """Writes fail while a reply ends; its publisher stops waiting (cancelled) while the
    flusher waits to retry, so the reply's log goes and nothing is left to write. Much later
    (on the relay's failure clock) one write fails once: it is retried, as any fresh failure,
    not given up at once as if Redis had been failing all along."""
    redis = DownRedisReplyStream(redis_client, prefix=redis_prefix)
    clock = [1000.0]
    relay = RelayedReplyStream(
        redis, retry_every_s=0.05, give_up_after_s=10.0, failure_clock=lambda: clock[0]
    )
    first, second = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    try:
        redis.down = True
        await relay.begin(first, TTL)
        await relay.publish(first, TokenEvent(delta="lost"), TTL)
        ending = asyncio.ensure_future(relay.publish(first, a_done_event(), TTL))
        await asyncio.wait_for(redis.failed.wait(), 5)  # the flusher now waits to retry
        ending.cancel()
        await asyncio.wait({ending})
        await asyncio.wait_for(relay.drain(), 5)
        redis.down, redis.failures = False, 1
        clock[0] += 60.0  # all well meanwhile, for longer than give_up_after_s

        await relay.begin(second, TTL)
        kept = await relay.publish(second, TokenEvent(delta="kept"), TTL)
        final = a_done_event()
        await asyncio.wait_for(relay.publish(second, final, TTL), 5)
    finally:
        await relay.aclose()

    assert redis.failures == 0  # the later write did fail once
    stored = await RedisReplyStream(redis_client, prefix=redis_prefix).read(
        second, None, block_ms=0
    )
    assert [event for _, event in stored] == [TokenEvent(delta="kept"), final]
    assert stored[0][0] == kept


# --- liveness: is anyone still generating the reply? --------------------------------------------

# Short enough for a test, with room for a stalled event loop before a mark lapses.
BEAT_S, ALIVE_S = 0.1, 2.0


async def eventually(check: Callable[[], Awaitable[bool]], want: bool, within_s: float) -> bool:
    """Poll ``check`` until it answers ``want`` or ``within_s`` passed; its last answer."""
    deadline = asyncio.get_running_loop().time() + within_s
    while (answer := await check()) != want and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(BEAT_S / 2)
    return answer


class FlakyRedisReplyStream(RedisReplyStream):
    """The real adapter, whose first beat fails as if Redis blinked; counts the beats."""

    marks = 0

    async def mark_producing(self, session_ids: Collection[str], ttl_ms: int) -> None:
        self.marks += 1
        if self.marks == 1:
            raise ServiceUnavailable("redis: connection failed")
        await super().mark_producing(session_ids, ttl_ms)


async def assert_read_then_interrupted(store: ReplyStream, session_id: str, first: str) -> None:
    """A reader of a reply whose generator is gone after its one token ("half", id ``first``)
    gets that token, a heartbeat, then ``reply_interrupted`` under an id of its own just after
    the token's (a reconnect after it is told to stop: ``ended_at``), and ends."""
    reader = ReadReplyHandler(store, heartbeat_s=BEAT_S, track_readers=False)
    async with asyncio.timeout(30):  # (a reader that is never told would wait forever)
        items = [item async for item in reader.events(session_id, None)]
    assert items[0] == [(first, TokenEvent(delta="half"))]
    assert items[1] is HEARTBEAT
    [(error_id, error)] = items[2] or []
    ms, seq = first.split("-")
    assert (error_id, getattr(error, "code", None)) == (f"{ms}-{int(seq) + 1}", "reply_interrupted")
    assert len(items) == 3
    assert await reader.ended_at(session_id, error_id)
    assert not await reader.ended_at(session_id, first)  # the error not seen yet: sent again


def beating(redis: RedisReplyStream) -> RelayedReplyStream:
    return RelayedReplyStream(redis, beat_every_s=BEAT_S, alive_for_s=ALIVE_S)


@pytest.mark.parametrize("backend", ["fake", "relayed", "lean"], indirect=True)
async def test_a_reply_is_produced_from_begin_until_its_final_event(
    reply_stream: ReplyStream, session_id: str
) -> None:
    assert not await reply_stream.producing(session_id)
    await reply_stream.begin(session_id, TTL)
    assert await reply_stream.producing(session_id)
    await publish_all(reply_stream, session_id, tokens("a"))
    assert await reply_stream.producing(session_id)

    await reply_stream.publish(session_id, a_done_event(), TTL)

    assert not await reply_stream.producing(session_id)


@pytest.mark.parametrize("backend", ["fake", "relayed", "lean"], indirect=True)
async def test_a_reply_whose_generator_ended_without_its_final_event_is_not_produced(
    reply_stream: ReplyStream, session_id: str
) -> None:
    release = asyncio.Event()

    async def lost_generator() -> None:  # a bug: it returns without a final event
        await reply_stream.begin(session_id, TTL)
        await publish_all(reply_stream, session_id, tokens("a"))
        await release.wait()

    generating = asyncio.create_task(lost_generator())
    assert await eventually(lambda: reply_stream.producing(session_id), True, within_s=5)

    release.set()
    await generating

    assert not await reply_stream.producing(session_id)


async def test_a_lost_generator_ends_its_readers_here_and_elsewhere_with_an_interrupted_error(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    here = beating(RedisReplyStream(redis_client, prefix=redis_prefix))
    there = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix))
    release = asyncio.Event()
    ids: list[str] = []

    async def lost_generator() -> None:
        await here.begin(session_id, TTL)
        ids.extend(await publish_all(here, session_id, tokens("half")))
        await here.drain()
        await release.wait()

    generating = asyncio.create_task(lost_generator())
    assert await eventually(lambda: there.producing(session_id), True, within_s=5 * ALIVE_S)
    release.set()
    await generating  # this process lives on: its beats go on, but no longer for this reply

    assert not await eventually(lambda: there.producing(session_id), False, within_s=5 * ALIVE_S)
    for store in (here, there):
        await assert_read_then_interrupted(store, session_id, ids[0])
    await here.aclose()


async def test_another_process_sees_a_reply_produced_across_beats_until_its_final_event(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    here = beating(RedisReplyStream(redis_client, prefix=redis_prefix))
    there = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix))
    await here.begin(session_id, TTL)

    assert await eventually(lambda: there.producing(session_id), True, within_s=ALIVE_S)
    await publish_all(here, session_id, tokens("a"))
    # several marks' lifetimes: only the beats keep it alive
    loop = asyncio.get_running_loop()
    until = loop.time() + 2.5 * ALIVE_S
    while loop.time() < until:
        assert await there.producing(session_id)
        await asyncio.sleep(BEAT_S)

    await here.publish(session_id, a_done_event(), TTL)

    assert not await there.producing(session_id)
    assert not await here.producing(session_id)
    await here.aclose()


async def test_a_reply_whose_process_died_ends_for_readers_elsewhere_with_an_interrupted_error(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    here = beating(RedisReplyStream(redis_client, prefix=redis_prefix))
    there = RelayedReplyStream(RedisReplyStream(redis_client, prefix=redis_prefix))
    await here.begin(session_id, TTL)
    [first] = await publish_all(here, session_id, tokens("half"))
    await here.drain()
    assert await eventually(lambda: there.producing(session_id), True, within_s=ALIVE_S)

    await here.aclose()  # the process dies: no more beats, and no final event

    assert not await eventually(lambda: there.producing(session_id), False, within_s=5 * ALIVE_S)
    await assert_read_then_interrupted(there, session_id, first)


async def test_a_beat_that_fails_is_tried_again_at_the_next_one(
    redis_client: Redis, redis_prefix: str, session_id: str
) -> None:
    redis = FlakyRedisReplyStream(redis_client, prefix=redis_prefix)
    here = beating(redis)
    await here.begin(session_id, TTL)

    assert await eventually(lambda: redis.producing(session_id), True, within_s=5 * ALIVE_S)
    assert redis.marks >= 2
    await here.aclose()


async def test_replies_begun_together_are_marked_in_one_round_trip(
    redis_client: Redis, redis_prefix: str
) -> None:
    redis = FlakyRedisReplyStream(redis_client, prefix=redis_prefix)
    redis.marks = 1  # no failure this time
    relay = RelayedReplyStream(redis)  # the default beat: no second one during the test
    sessions = [uuid.uuid4().hex for _ in range(50)]
    for session in sessions:
        await relay.begin(session, TTL)

    assert await eventually(lambda: redis.producing(sessions[-1]), True, within_s=ALIVE_S)
    assert all([await redis.producing(s) for s in sessions])
    assert redis.marks == 2
    await relay.aclose()


async def test_a_mark_arriving_after_the_final_event_does_not_revive_the_reply(
    redis_client: Redis, redis_prefix: str
) -> None:
    redis = RedisReplyStream(redis_client, prefix=redis_prefix)
    published, appended = uuid.uuid4().hex, uuid.uuid4().hex
    await redis.mark_producing([published, appended], 60_000)
    assert await redis.producing(published)
    assert await redis.producing(appended)

    await redis.publish(published, a_done_event(), TTL)
    await redis.append([(appended, [("1-1", TokenEvent(delta="a")), ("1-2", a_done_event())])], TTL)
    await redis.mark_producing([published, appended], 60_000)

    assert not await redis.producing(published)
    assert not await redis.producing(appended)


async def test_last_is_the_streams_last_event_with_its_id(
    reply_stream: ReplyStream, session_id: str
) -> None:
    assert await reply_stream.last(session_id) is None
    ids = await publish_all(reply_stream, session_id, tokens("a", "b"))
    assert await reply_stream.last(session_id) == (ids[1], TokenEvent(delta="b"))

    final = ErrorEvent(code="provider_error", message="gone")
    final_id = await reply_stream.publish(session_id, final, ttl_seconds=TTL)

    assert await reply_stream.last(session_id) == (final_id, final)
    assert await reply_stream.last(uuid.uuid4().hex) is None  # another session's is not it


# (Redis alone: no beat)
@pytest.mark.parametrize("backend", ["fake", "relayed", "lean"], indirect=True)
async def test_a_reader_resumed_after_an_id_beyond_a_live_reply_still_gets_its_final_event(
    reply_stream: ReplyStream, session_id: str
) -> None:
    await reply_stream.begin(session_id, TTL)
    first = await reply_stream.publish(session_id, TokenEvent(delta="a"), ttl_seconds=TTL)
    ms = int(first.partition("-")[0])
    forged = f"{ms + 10**9}-1"  # a valid id after every event the reply will have
    reader = ReadReplyHandler(reply_stream, heartbeat_s=0.05, track_readers=False)
    read: list[tuple[str, ReplyEvent]] = []

    async def read_all() -> None:
        async for batch in reader.events(session_id, forged):
            if batch is not HEARTBEAT:
                read.extend(batch)

    reading = asyncio.create_task(read_all())
    await asyncio.sleep(0.1)  # the reader waits past the reply's end
    await reply_stream.publish(session_id, TokenEvent(delta="b"), ttl_seconds=TTL)
    final = ErrorEvent(code="provider_error", message="gone")
    final_id = await reply_stream.publish(session_id, final, ttl_seconds=TTL)
    await asyncio.wait_for(reading, 10)

    assert read == [(final_id, final)]
