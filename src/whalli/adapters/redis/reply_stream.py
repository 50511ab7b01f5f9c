"""``ReplyStream`` on Redis Streams: one stream per chat session, read by every API process.

Keys: ``whalli:reply:{session_id}`` (the events), ``whalli:reply-stop:{session_id}`` (the stop
flag), ``whalli:reply-leases:{session_id}`` (attached readers: a sorted set of reader ids by the
end of their lease, in Redis's clock, so one whose process died stops counting) and
``whalli:reply-producer:{session_id}`` (whether someone still generates). Event ids are the
stream's ids (``publish``), or the writer's own increasing ids (``append``, used by
``RelayedReplyStream``). A stream is never trimmed: it is the whole reply for a reader in
another process, one resuming or one attaching late (a reply of more tokens than a MAXLEN lost
its beginning to them), and its key expires with the session's stream TTL.

Liveness: the generating process keeps the producer key ``live`` with a short expiry, renewed by
one ``mark_producing`` for all its replies (``RelayedReplyStream``'s beacon); if the process dies
the key expires and ``producing`` turns False. The write of a final event sets it to ``ended``
in the same script or transaction (kept as long as the stream), and ``mark_producing`` leaves an
ended reply ended: a renewal still in flight when the reply ends cannot bring it back to life.
This adapter on its own keeps no beacon: ``producing`` is True only while a relay beats for it.

With ``lean`` (the app's wiring) the relay's writes, one script per write whatever it holds,
go through the lean multiplexed client (``adapters/redis/resp``); reads, blocking ones above
all, stay on redis-py.

Connections: a blocking XREAD holds its pooled connection for as long as it waits, so every SSE
stream read from here keeps one Redis connection busy. In the app, ``RelayedReplyStream`` serves
the readers in the generating process from memory, so only streams read in another process (or
after their reply ended) wait here. Size the client's pool (``create_redis``'s
``max_connections``) and Redis's ``maxclients`` for those, plus headroom.
Waits are cut into slices shorter than the client's socket timeout, which would otherwise end
a long blocking read with a timeout error; between slices the connection goes back to the pool.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

import msgspec
import redis.exceptions as rx
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from whalli.adapters.redis._values import check_ttl
from whalli.adapters.redis.errors import translated
from whalli.adapters.redis.resp import RespClient
from whalli.domain.model.errors import InvalidInput, ServiceUnavailable
from whalli.domain.model.replies import (
    AnyReplyEvent,
    ErrorEvent,
    ReplyEvent,
    decode_reply_event,
    encode_reply_event,
    is_final,
    parse_event_id,
)
from whalli.ports.reply_stream import ReplyStream

# Keys read by one MGET when polling many sessions at once (stop flags, reader counts).
_MGET_BATCH = 1000


_FIELD = b"payload"
_LIVE, _ENDED = "live", "ended"  # the producer key's values, as the scripts write them
# The readers' count of releases before leases: read, never written (drop it a release later).
_LEGACY = "reply-readers"
# KEYS: per stream, the stream and its producer key; ARGV: ttl ms, the number of streams, then
# per stream its event count, whether this write ends the reply (1 or 0) and its (id, payload)
# pairs. An id the stream already holds (a batch written again after its answer was lost) is
# skipped; a stream Redis refuses (its key holds something else) is left, not marked ended, and
# its number returned: the others are written all the same.
_APPEND = """
local ttl, streams, at = ARGV[1], tonumber(ARGV[2]), 3
local refused = {}
for k = 1, streams do
  local key, count, ends = KEYS[2 * k - 1], tonumber(ARGV[at]), ARGV[at + 1] == '1'
  at = at + 2
  local ok = true
  for _ = 1, count do
    if ok then
      local r = redis.pcall('XADD', key, ARGV[at], 'payload', ARGV[at + 1])
      if type(r) == 'table' and r.err and not string.find(r.err, 'equal or smaller', 1, true) then
        ok = false
        refused[#refused + 1] = k
      end
    end
    at = at + 2
  end
  if ok then
    redis.call('PEXPIRE', key, ttl)
    if ends then
      redis.call('SET', KEYS[2 * k], 'ended', 'PX', ttl)
    end
  end
end
return refused
"""
# KEYS: producer keys; ARGV: their expiry in ms. A reply whose end was written stays ended.
_MARK = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) ~= 'ended' then
    redis.call('SET', key, 'live', 'PX', ARGV[1])
  end
end
return #KEYS
"""

# KEYS: a session's reader leases; ARGV: the reader's id, its lease in ms. Ended leases go.
_JOIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
"""
# KEYS: per session its reader leases and its legacy count; how many readers each has: the
# leases running, plus the readers of processes of the release before leases (which counted
# them with INCR/DECR on ``reply-readers``), so a rolling deploy stops no reply they read.
_READERS = """
local t = redis.call('TIME')
local now = '(' .. (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local counts = {}
for i = 1, #KEYS / 2 do
  local legacy = tonumber(redis.call('GET', KEYS[2 * i]) or 0) or 0
  counts[i] = redis.call('ZCOUNT', KEYS[2 * i - 1], now, '+inf') + math.max(legacy, 0)
end
return counts
"""


class StreamsRefused(ServiceUnavailable):
    """Redis took a write but refused some sessions' streams (their keys hold something
    else): those sessions' events are not stored, the others' are."""

    def __init__(self, sessions: list[str]) -> None:
        super().__init__(f"redis: {len(sessions)} reply streams refused the write")
        self.sessions = sessions


def _decoded(fields: dict[bytes, bytes]) -> AnyReplyEvent:
    try:
        return decode_reply_event(fields[_FIELD])
    except (KeyError, msgspec.DecodeError):
        # Written by an incompatible release (streams live minutes): end the reply cleanly
        # rather than fail every reader, and let the id advance past it.
        return ErrorEvent(code="reply_unreadable", message="This reply can no longer be read.")


def _entries(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    # create_redis speaks RESP2: XREAD answers [[key, [(id, fields), ...]]] (or nothing).
    return [(entry[0], entry[1]) for _, entries in response or () for entry in entries]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisReplyStream(ReplyStream):
    def __init__(
        self,
        client: Redis,
        prefix: str = "whalli:",
        *,
        block_slice_ms: int | None = None,
        lean: RespClient | None = None,
    ) -> None:
        self._client = client
        self._lean = lean  # the scripts' writes (append, mark_producing): see the docstring
        self._prefix = prefix
        if block_slice_ms is None:
            timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
            # Half the socket timeout leaves room for the round trip; no timeout, no slicing.
            block_slice_ms = 0 if timeout is None else max(1, int(float(timeout) * 500))
        self._block_slice_ms = block_slice_ms
        self._append = client.register_script(_APPEND)
        self._mark = client.register_script(_MARK)
        self._join = client.register_script(_JOIN)
        self._readers = client.register_script(_READERS)

    def _key(self, kind: str, session_id: str) -> str:
        return f"{self._prefix}{kind}:{session_id}"

    async def publish(self, session_id: str, event: ReplyEvent, ttl_seconds: int) -> str:
        check_ttl(ttl_seconds)
        key = self._key("reply", session_id)
        # MULTI/EXEC in one round trip: the stream never exists without its expiry, and a final
        # event never without its reply marked ended.
        with translated():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xadd(key, {_FIELD: encode_reply_event(event)})
                pipe.pexpire(key, ttl_seconds * 1000)
                if is_final(event):
                    pipe.set(self._key("reply-producer", session_id), _ENDED, ex=ttl_seconds)
                event_id, *_ = await pipe.execute()
        return _text(event_id)

    async def append(
        self, batches: Sequence[tuple[str, Sequence[tuple[str, ReplyEvent]]]], ttl_seconds: int
    ) -> None:
        """Write events under ids chosen by the caller (increasing per session, above any id
        already in the stream), for several sessions in one round trip: ``[(session_id,
        [(event_id, event), ...]), ...]``. Each written stream's expiry is set by the same
        script, so a stream never exists without it; a session whose final event is written
        is marked ended by it too (see ``producing``). An id the stream already holds is
        skipped (a batch written again), and a session whose stream Redis refuses is left
        out: ``StreamsRefused`` names those once the rest is written.

        One EVALSHA whatever the batch: a MULTI of one XADD per event costs the client about
        24 µs of CPU per command to pack and parse (measured), the script's arguments ~1 µs."""
        check_ttl(ttl_seconds)
        if not batches:
            return
        keys: list[str] = []
        args: list[bytes | str | int] = [ttl_seconds * 1000, len(batches)]
        for session_id, events in batches:
            keys += (self._key("reply", session_id), self._key("reply-producer", session_id))
            args += (len(events), int(bool(events) and is_final(events[-1][1])))
            for event_id, event in events:
                args += (event_id, encode_reply_event(event))
        refused = await self._run(self._append, keys, args)
        if refused:
            sessions = [batches[int(k) - 1][0] for k in refused]
            raise StreamsRefused(sessions)

    async def mark_producing(self, session_ids: Collection[str], ttl_ms: int) -> None:
        """Mark these replies as generated by the caller for the next ``ttl_ms`` (a reply
        whose final event is already written stays ended): one EVALSHA per ``_MGET_BATCH``
        sessions. The caller renews the mark well before it expires."""
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        ids = list(session_ids)
        for i in range(0, len(ids), _MGET_BATCH):
            keys = [self._key("reply-producer", s) for s in ids[i : i + _MGET_BATCH]]
            await self._run(self._mark, keys, [ttl_ms])

    async def producing(self, session_id: str) -> bool:
        with translated():
            value = await self._client.get(self._key("reply-producer", session_id))
        return value is not None and _text(value) == _LIVE

    async def _run(
        self, script: AsyncScript, keys: list[str], args: list[bytes | str | int]
    ) -> Any:
        """The script's answer."""
        with translated():
            lean = self._lean
            if lean is not None:
                try:
                    return await lean.execute("EVALSHA", script.sha, len(keys), *keys, *args)
                except rx.NoScriptError:  # a restarted Redis: EVAL loads it again
                    source = script.script
                    text = source if isinstance(source, str | bytes) else bytes(source)
                    return await lean.execute("EVAL", text, len(keys), *keys, *args)
            try:
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except rx.NoScriptError:
                return await script(keys=keys, args=args)

    async def read(
        self, session_id: str, after: str | None, *, block_ms: int, count: int = 256
    ) -> list[tuple[str, ReplyEvent]]:
        if after is not None:
            parse_event_id(after)  # refuse garbage before Redis sees it
        if count <= 0:
            raise InvalidInput("count must be positive", field="count")
        streams: dict[Any, Any] = {self._key("reply", session_id): after or "0-0"}
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        with translated():
            while True:
                remaining = int((deadline - time.monotonic()) * 1000)
                # BLOCK 0 would wait forever: no time left means a plain, non-blocking read.
                block = None if remaining <= 0 else remaining
                if block is not None and self._block_slice_ms:
                    block = min(block, self._block_slice_ms)
                response = await self._client.xread(streams, count=count, block=block)
                entries = _entries(response)
                if entries or block is None:
                    return [(_text(i), _decoded(fields)) for i, fields in entries]

    async def last(self, session_id: str) -> tuple[str, ReplyEvent] | None:
        with translated():
            found = await self._client.xrevrange(self._key("reply", session_id), count=1)
        entries = _entries([(None, found)])
        if not entries:
            return None
        event_id, fields = entries[0]
        return _text(event_id), _decoded(fields)

    async def request_stop(self, session_id: str, ttl_seconds: int) -> None:
        check_ttl(ttl_seconds)
        with translated():
            await self._client.set(self._key("reply-stop", session_id), 1, ex=ttl_seconds)

    async def stops_requested(self, session_ids: Collection[str]) -> set[str]:
        values = await self._values("reply-stop", session_ids)
        return {session_id for session_id, value in values.items() if value is not None}

    async def reader_joined(self, session_id: str, reader_id: str, lease_s: float) -> None:
        lease_ms = int(lease_s * 1000)
        if lease_ms <= 0:
            raise ValueError("lease_s must be positive")
        await self._run(self._join, [self._key("reply-leases", session_id)], [reader_id, lease_ms])

    async def reader_left(self, session_id: str, reader_id: str) -> None:
        with translated():
            await self._client.zrem(self._key("reply-leases", session_id), reader_id)

    async def readers_of(self, session_ids: Collection[str]) -> dict[str, int]:
        """One EVALSHA per ``_MGET_BATCH`` sessions (counted in Redis's clock)."""
        ids = list(session_ids)
        counts: dict[str, int] = {}
        for i in range(0, len(ids), _MGET_BATCH):
            batch = ids[i : i + _MGET_BATCH]
            keys = [
                key for s in batch for key in (self._key("reply-leases", s), self._key(_LEGACY, s))
            ]
            found = await self._run(self._readers, keys, [])
            counts.update(zip(batch, (int(n) for n in found), strict=True))
        return counts

    async def _values(self, kind: str, session_ids: Collection[str]) -> dict[str, Any]:
        """The value of each session's ``kind`` key (``None`` when absent), by MGET of at most
        ``_MGET_BATCH`` keys: one round trip for every reply a process generates."""
        ids = list(session_ids)
        values: dict[str, Any] = {}
        with translated():
            for i in range(0, len(ids), _MGET_BATCH):
                batch = ids[i : i + _MGET_BATCH]
                found = await self._client.mget([self._key(kind, s) for s in batch])
                values.update(zip(batch, found, strict=True))
        return values

    async def begin(self, session_id: str, ttl_seconds: int) -> None:
        check_ttl(ttl_seconds)  # every process reads the shared stream: nothing to prepare
