"""``ReplyStream`` that serves this process's replies from memory and writes them behind to Redis.

A reply is generated in the API process that started it, and usually read there too (the
browser's ``GET /api/chat/stream`` follows its ``POST /api/chat/start``). For those readers a
round trip through Redis per token is pure cost: latency before every token, a blocked Redis
connection per open stream, and CPU that caps how many streams one process relays. So:

- the generating process keeps the reply's events in memory (a :class:`_Log`) from the moment
  it begins the generation until its final event is in Redis; its readers take
  events from there, woken directly by ``publish``;
- every event is still written to the Redis stream (see ``RedisReplyStream``), batched: one
  EVALSHA per write for every session that published during the previous one. Other processes,
  and readers that come back after the reply ended, read Redis as before;
- event ids are chosen here, ``<ms>-1``, ``<ms>-2``, ... where ``<ms>`` is the wall-clock time
  the log was opened (so a stream opened again after it expired still has larger ids), so a
  reader has each id at once and the same id names the same event in memory and in Redis;
  ``Last-Event-ID`` resumes in either place;
- ``publish`` of the final event returns once the whole reply is in Redis (so a reader that
  attaches anywhere afterwards sees all of it); only then is the log dropped.

When Redis fails to take a batch, local readers still get every event and the reply is still
saved by its generator; the batch is written again with the next one (every
``retry_every_s``, in order: the ids are the same, and one the stream already holds is
skipped), for up to ``give_up_after_s`` of failed writes, after which readers in other
processes miss it (logged, throttled).

Liveness (``producing``): one beacon task per process marks every reply it generates as alive in
Redis (``RedisReplyStream.mark_producing``): a reply as soon as it begins, then all of them every
``beat_every_s`` in one round trip, each mark lasting ``alive_for_s``. Readers elsewhere ask
only after a heartbeat of silence, so the mark exists by then; if this process dies the marks
expire and those readers end the reply instead of waiting forever. A reply whose generating task
(the one that called ``begin``) ended without its final event is no longer marked, and is not
producing for the readers here either: a generator lost to a bug ends its readers as a dead
process does. The beacon runs only while something is generated here, and a failed beat is
logged (throttled) and tried again next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
import weakref
from collections.abc import Callable, Collection, Sequence

import structlog

from whalli.adapters.redis._values import check_ttl
from whalli.adapters.redis.reply_stream import RedisReplyStream, StreamsRefused
from whalli.domain.model.replies import ReplyEvent, is_final, parse_event_id
from whalli.ports.reply_stream import ReplyStream

log = structlog.get_logger(__name__)

_WARN_EVERY_S = 30.0


class _Deadlines:
    """One timer for the waiting readers of every log of a relay.

    Each log asks for one deadline at a time (its earliest reader's, ``_Log.wait_for_more``);
    they are kept in a heap under a single loop timer armed at the first. An idle open stream
    then costs a heap entry, not a loop timer of its own (~0.7 KiB each, with thousands open).
    The heap holds its logs weakly: a dropped log is not kept until its deadline.
    """

    __slots__ = ("_armed_at", "_heap", "_loop", "_seq", "_timer")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[_Log]]] = []
        self._seq = 0  # ties: logs do not compare
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    def at(self, deadline: float, log: _Log, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, weakref.ref(log)))
        if self._timer is None or deadline < self._armed_at:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at, self._timer = deadline, self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, ref = heapq.heappop(heap)
            log = ref()
            if log is not None:
                log.time_up(deadline, now)  # may ask for its next deadline (pushed, not armed)
        if heap:
            self._arm(heap[0][0])


class _Log:
    """One locally generated reply: its events in order, and who waits for more.

    Readers wait for the next event with a limit (the SSE heartbeat). A log asks its relay's
    ``_Deadlines`` for one deadline at a time, its earliest reader's, and asks again lazily
    when it passes with readers still in time, so a streaming reply costs no timer per token
    and reader (an ``asyncio.timeout`` each would create and cancel one every time).
    """

    __slots__ = (
        "__weakref__", "_deadlines", "_in_redis", "_loop", "_timer_at", "_waiters", "events",
        "flushed", "generator", "ms", "touched", "ttl",
    )  # fmt: skip

    def __init__(self, ttl_seconds: int, deadlines: _Deadlines) -> None:
        self.ms = time.time_ns() // 1_000_000
        self.events: list[tuple[str, ReplyEvent]] = []
        self.flushed = 0  # how many of ``events`` were handed to Redis
        self.ttl = ttl_seconds
        self.touched = time.monotonic()
        # the task generating the reply (``begin`` runs in it); None: not known
        self.generator: asyncio.Task[object] | None = None
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []  # (deadline, waiter)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines = deadlines
        self._timer_at: float | None = None  # the deadline asked for, None: none
        self._in_redis: asyncio.Event | None = None

    def append(self, event: ReplyEvent, ttl_seconds: int) -> str:
        event_id = f"{self.ms}-{len(self.events) + 1}"
        self.events.append((event_id, event))
        self.ttl, self.touched = ttl_seconds, time.monotonic()
        if self._waiters:
            self._wake_all()
        return event_id

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def after(self, after: str | None, count: int) -> list[tuple[str, ReplyEvent]]:
        start = self._position(after)
        return self.events[start : start + count]

    def _position(self, after: str | None) -> int:
        """Index of the first event after ``after``."""
        if after is None:
            return 0
        ms, seq = parse_event_id(after)
        if ms != self.ms:
            return 0 if ms < self.ms else len(self.events)
        return min(seq, len(self.events))

    def expired(self, now: float) -> bool:
        return now - self.touched >= self.ttl

    @property
    def abandoned(self) -> bool:
        """Its generator ended without the final event (which drops the log before the task
        ends): nothing more will come."""
        return self.generator is not None and self.generator.done()

    def wait_for_more(self, seconds: float) -> asyncio.Future[None]:
        """A future resolved when the next event is appended, or once ``seconds`` passed.

        (A plain future, not a coroutine: no frame of its own under every waiting reader. One
        cancelled by its reader leaving stays listed until the next event or deadline.)
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append((deadline, waiter))
        if self._timer_at is None or self._timer_at > deadline:
            self._timer_at = deadline
            self._deadlines.at(deadline, self, loop)
        return waiter

    def time_up(self, deadline: float, now: float) -> None:
        """The deadline asked for passed (one asked for before a closer one is ignored): wake
        the readers whose limit passed; the others keep waiting, asked again for the first."""
        if deadline != self._timer_at:
            return
        self._timer_at = None
        if not self._waiters or self._loop is None:
            return
        waiting: list[tuple[float, asyncio.Future[None]]] = []
        for deadline, waiter in self._waiters:
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_result(None)
            else:
                waiting.append((deadline, waiter))
        self._waiters = waiting
        if waiting:
            self._timer_at = min(limit for limit, _ in waiting)
            self._deadlines.at(self._timer_at, self, self._loop)

    def close(self) -> None:
        """Dropped: its readers look elsewhere now (its deadline, if any, is ignored)."""
        self._timer_at = None
        self._wake_all()

    def mark_flushed(self, upto: int) -> None:
        self.flushed = upto
        if self._in_redis is not None and upto == len(self.events):
            self._in_redis.set()

    async def wait_in_redis(self) -> None:
        while self.flushed < len(self.events):
            if self._in_redis is None or self._in_redis.is_set():
                self._in_redis = asyncio.Event()
            await self._in_redis.wait()


class RelayedReplyStream(ReplyStream):
    """Local-first ``ReplyStream`` over a ``RedisReplyStream`` (see the module docstring).

    A log expires like its Redis stream: ``ttl_seconds`` after its last event.
    """

    def __init__(
        self,
        redis: RedisReplyStream,
        *,
        sweep_every_s: float = 60.0,
        beat_every_s: float = 5.0,
        alive_for_s: float = 15.0,
        retry_every_s: float = 0.25,
        give_up_after_s: float = 15.0,
        failure_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``failure_clock`` (seconds, monotonic) times how long writes have failed, against
        ``give_up_after_s``; a test passes one it moves by hand."""
        if not 0 < beat_every_s < alive_for_s:
            raise ValueError("beat_every_s must be more than 0 and less than alive_for_s")
        self._redis = redis
        self._retry_every, self._give_up_after = retry_every_s, give_up_after_s
        self._failure_clock = failure_clock
        self._failing_since: float | None = None  # when writes began to fail, while they do
        self._logs: dict[str, _Log] = {}
        self._deadlines = _Deadlines()
        self._dirty: dict[str, _Log] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._sweep_every = sweep_every_s
        self._next_sweep = time.monotonic() + sweep_every_s
        self._warned_at = -_WARN_EVERY_S
        self._beat_every, self._alive_ms = beat_every_s, int(alive_for_s * 1000)
        self._beacon: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._fresh: set[str] = set()  # begun since the last beat: marked at once
        self._beat_warned_at = -_WARN_EVERY_S

    @property
    def local_replies(self) -> int:
        return len(self._logs)

    async def begin(self, session_id: str, ttl_seconds: int) -> None:
        check_ttl(ttl_seconds)
        self._open(session_id, ttl_seconds)
        self._logs[session_id].generator = asyncio.current_task()
        self._announce(session_id)

    async def publish(self, session_id: str, event: ReplyEvent, ttl_seconds: int) -> str:
        check_ttl(ttl_seconds)
        entry = self._live(session_id)
        if entry is None:  # published without begin: still relayed, and dropped when final
            entry = self._logs[session_id] = _Log(ttl_seconds, self._deadlines)
            self._announce(session_id)
        event_id = entry.append(event, ttl_seconds)
        self._dirty[session_id] = entry
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        if is_final(event):
            try:
                await entry.wait_in_redis()
            finally:
                self._drop(session_id)
        return event_id

    async def read(
        self, session_id: str, after: str | None, *, block_ms: int, count: int = 256
    ) -> list[tuple[str, ReplyEvent]]:
        entry = self._live(session_id)
        if entry is None:
            return await self._redis.read(session_id, after, block_ms=block_ms, count=count)
        found = entry.after(after, count)
        if found or block_ms <= 0:
            return found
        await entry.wait_for_more(block_ms / 1000)
        return entry.after(after, count)

    async def producing(self, session_id: str) -> bool:
        entry = self._live(session_id)
        if entry is not None:
            # generated here (its final event drops the log), unless its generator was lost
            return not entry.abandoned
        return await self._redis.producing(session_id)

    async def last(self, session_id: str) -> tuple[str, ReplyEvent] | None:
        entry = self._live(session_id)
        if entry is not None and entry.events:
            return entry.events[-1]
        return await self._redis.last(session_id)

    async def request_stop(self, session_id: str, ttl_seconds: int) -> None:
        await self._redis.request_stop(session_id, ttl_seconds)

    async def stops_requested(self, session_ids: Collection[str]) -> set[str]:
        return await self._redis.stops_requested(session_ids)

    async def reader_joined(self, session_id: str, reader_id: str, lease_s: float) -> None:
        await self._redis.reader_joined(session_id, reader_id, lease_s)

    async def reader_left(self, session_id: str, reader_id: str) -> None:
        await self._redis.reader_left(session_id, reader_id)

    async def readers_of(self, session_ids: Collection[str]) -> dict[str, int]:
        return await self._redis.readers_of(session_ids)

    async def drain(self) -> None:
        """Wait until everything published so far was handed to Redis (at shutdown)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    async def aclose(self) -> None:
        """At shutdown: ``drain``, then stop the beacon, so replies still unfinished here are
        taken as interrupted elsewhere once their marks expire (a later ``begin`` starts it
        again)."""
        await self.drain()
        beacon, self._beacon = self._beacon, None
        if beacon is not None and not beacon.done():
            # redis-py may swallow a cancellation that lands as a command completes (seen with
            # 8.1): the beacon also ends by itself once it is no longer this relay's.
            self._wake.set()
            beacon.cancel()
            await asyncio.wait({beacon})

    def _announce(self, session_id: str) -> None:
        """Mark the session alive in the next beat, now, and keep it marked while its log lives."""
        self._fresh.add(session_id)
        self._wake.set()
        loop = asyncio.get_running_loop()
        beacon = self._beacon
        if beacon is None or beacon.done() or beacon.get_loop() is not loop:
            self._wake = asyncio.Event()  # bound to the running loop from its first wait
            self._wake.set()
            self._beacon = loop.create_task(self._beat(), name="reply-beacon")

    async def _beat(self) -> None:
        # Replies begun since the last beat are marked at once; all of them every beat_every_s.
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        due = loop.time()
        while True:
            self._wake.clear()
            if not self._logs or self._beacon is not me:
                return  # closed, or nothing to mark: the next _announce starts a new loop
            now = loop.time()
            if now >= due:
                due = now + self._beat_every
                moment = time.monotonic()
                sessions = [
                    s
                    for s, entry in self._logs.items()
                    if not entry.expired(moment) and not entry.abandoned
                ]
            else:
                sessions = [s for s in self._fresh if s in self._logs]
            self._fresh = set()
            if sessions:
                try:
                    await self._redis.mark_producing(sessions, self._alive_ms)
                except Exception as e:  # tried again at the next beat
                    self._warn_beat(e, len(sessions))
            if not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, due - loop.time())):
                        await self._wake.wait()

    async def _flush(self) -> None:
        try:
            await self._flush_dirty()
        finally:
            # Nothing is left to write (the last failing batch's replies may have been dropped
            # while it waited to retry): a later failure starts a clock of its own.
            self._failing_since = None

    async def _flush_dirty(self) -> None:
        # Whatever was published during the previous write goes out in the next one.
        while self._dirty:
            await asyncio.sleep(0)  # let this turn's publishers add to the batch
            dirty, self._dirty = self._dirty, {}
            batches: list[tuple[str, Sequence[tuple[str, ReplyEvent]]]] = []
            marks: list[tuple[_Log, int]] = []
            for session_id, entry in dirty.items():
                upto = len(entry.events)
                batches.append((session_id, entry.events[entry.flushed : upto]))
                marks.append((entry, upto))
            ttl = max(entry.ttl for entry in dirty.values())
            try:
                await self._redis.append(batches, ttl)
            except StreamsRefused as e:  # the others were written; those will never be
                self._warn(e, len(e.sessions))
            except Exception as e:  # never lose the local readers over it
                self._warn(e, len(batches))
                if self._keep_trying(dirty):
                    await asyncio.sleep(self._retry_every)
                    continue
            self._failing_since = None
            for entry, upto in marks:
                entry.mark_flushed(upto)

    def _keep_trying(self, dirty: dict[str, _Log]) -> bool:
        """After a failed write: whether to write its events again with the next batch (they
        are put back), which it is until writes have failed for ``give_up_after_s``; then
        they are let go, as written, so that a final event's publisher is not held longer."""
        now = self._failure_clock()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since >= self._give_up_after:
            return False
        kept = False
        for session_id, entry in dirty.items():
            if self._logs.get(session_id) is entry:  # (not dropped meanwhile)
                self._dirty.setdefault(session_id, entry)
                kept = True
        if not kept:  # nothing left to write: the next failure starts a clock of its own
            self._failing_since = None
        return kept

    def _warn(self, error: Exception, sessions: int) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("reply_write_failed", error=type(error).__name__, sessions=sessions)

    def _warn_beat(self, error: Exception, sessions: int) -> None:
        now = time.monotonic()
        if now - self._beat_warned_at >= _WARN_EVERY_S:
            self._beat_warned_at = now
            log.warning("reply_beat_failed", error=type(error).__name__, sessions=sessions)

    def _open(self, session_id: str, ttl_seconds: int) -> bool:
        """Keep the session's events here from now on; False if they already were."""
        if self._live(session_id) is not None:
            return False
        self._logs[session_id] = _Log(ttl_seconds, self._deadlines)
        self._sweep()
        return True

    def _live(self, session_id: str) -> _Log | None:
        entry = self._logs.get(session_id)
        if entry is not None and entry.expired(time.monotonic()):
            self._drop(session_id)  # like the Redis stream, gone once its ttl passed unwritten
            return None
        return entry

    def _drop(self, session_id: str) -> None:
        entry = self._logs.pop(session_id, None)
        if entry is not None:
            entry.close()
        self._dirty.pop(session_id, None)
        if not self._logs:
            self._wake.set()  # the beacon ends now rather than at its next beat

    def _sweep(self) -> None:
        # Logs whose generator vanished without a final event (a crash) leave after their ttl.
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_every
        for session_id, entry in list(self._logs.items()):
            if entry.expired(now):
                self._drop(session_id)
