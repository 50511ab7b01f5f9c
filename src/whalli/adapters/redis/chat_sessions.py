"""``ChatSessionStore`` on Redis: one msgpack-encoded key per session, expiring with it.

A session that names its reply also has a pointer key, ``<reply prefix><reply message id>`` ->
session id, written in the same MULTI/EXEC as the session (one round trip, as before) with the
same expiry, so a chat's reader finds the session of a reply still being generated with one
MGET. The reply prefix is not under the session prefix, so no session id can name a pointer.

With ``local_copies_s`` the store also keeps, in this process, a copy of each session it saved,
for that long (never past the session's expiry): the browser's stream request that follows its
start nearly always reaches the same API process, and then finds its session without a round
trip. Sessions never change once saved, so a copy is never stale; the one exception is
``delete`` called by another process, which this process sees once its copy lapses (no use case
deletes sessions today).

With ``lean`` (the app's wiring) a session's save and read go through the lean multiplexed
client (``adapters/redis/resp``), as every start saves one; the rest through redis-py.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection
from datetime import datetime
from uuid import UUID

import msgspec
from redis.asyncio import Redis

from whalli.adapters.redis._values import as_bytes
from whalli.adapters.redis.errors import translated
from whalli.adapters.redis.resp import Arg, RespClient
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.errors import ChatSessionNotFound
from whalli.ports.chat_sessions import ChatSessionStore

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ChatSession)


class RedisChatSessionStore(ChatSessionStore):
    def __init__(
        self,
        client: Redis,
        prefix: str = "whalli:chat-session:",
        *,
        reply_prefix: str | None = None,
        local_copies_s: float = 0.0,
        max_local_copies: int = 10_000,
        lean: RespClient | None = None,
    ) -> None:
        self._client = client
        self._lean = lean
        self._prefix = prefix
        self._reply_prefix = reply_prefix or prefix.rstrip(":") + "-reply:"
        self._local_s, self._max_local = local_copies_s, max_local_copies
        # session id -> (monotonic deadline, session), oldest first
        self._local: OrderedDict[str, tuple[float, ChatSession]] = OrderedDict()

    def _key(self, session_id: str) -> str:
        return self._prefix + session_id

    def _reply_key(self, reply_message_id: UUID) -> str:
        return self._reply_prefix + str(reply_message_id)

    def _keys(self, session: ChatSession) -> list[str]:
        """The session's key and, if it names its reply, its pointer's."""
        keys = [self._key(session.id)]
        if session.reply_message_id is not None:
            keys.append(self._reply_key(session.reply_message_id))
        return keys

    async def save(self, session: ChatSession, now: datetime) -> None:
        ttl_ms = int((session.expires_at - now).total_seconds() * 1000)
        self._local.pop(session.id, None)
        with translated():
            if ttl_ms <= 0:
                # Already expired: make sure no earlier version of it stays readable.
                await self._client.delete(*self._keys(session))
                return
            lean = self._lean
            if lean is not None:
                sets: list[tuple[Arg, ...]] = [
                    ("SET", self._key(session.id), _encoder.encode(session), "PX", ttl_ms)
                ]
                if session.reply_message_id is not None:
                    key = self._reply_key(session.reply_message_id)
                    sets.append(("SET", key, session.id, "PX", ttl_ms))
                    await lean.transaction(*sets)
                else:
                    await lean.execute(*sets[0])
            elif session.reply_message_id is None:
                await self._client.set(self._key(session.id), _encoder.encode(session), px=ttl_ms)
            else:
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.set(self._key(session.id), _encoder.encode(session), px=ttl_ms)
                    pipe.set(self._reply_key(session.reply_message_id), session.id, px=ttl_ms)
                    await pipe.execute()
        if self._local_s > 0:
            self._remember(session, min(self._local_s, ttl_ms / 1000))

    async def get(self, session_id: str) -> ChatSession:
        local = self._local.get(session_id)
        if local is not None:
            if local[0] > time.monotonic():
                return local[1]
            del self._local[session_id]
        with translated():
            if self._lean is not None:
                raw = as_bytes(await self._lean.execute("GET", self._key(session_id)))
            else:
                raw = as_bytes(await self._client.get(self._key(session_id)))
        session = _decoded(raw)
        if session is None:
            raise ChatSessionNotFound()
        return session

    async def delete(self, session_id: str) -> None:
        # The pointer's key needs the session's reply id: from the local copy (a start that
        # failed after saving has one), else read first; deleting is rare (failed starts).
        local = self._local.pop(session_id, None)
        with translated():
            if local is not None:
                session: ChatSession | None = local[1]
            else:
                session = _decoded(as_bytes(await self._client.get(self._key(session_id))))
            keys = self._keys(session) if session is not None else [self._key(session_id)]
            await self._client.delete(*keys)

    async def live_session_ids(self, reply_message_ids: Collection[UUID]) -> dict[UUID, str]:
        ids = list(reply_message_ids)
        if not ids:
            return {}
        with translated():
            found = await self._client.mget([self._reply_key(i) for i in ids])
        live = {}
        for reply_id, raw in zip(ids, found, strict=True):
            session_id = as_bytes(raw)
            if session_id is not None:
                live[reply_id] = session_id.decode()
        return live

    def _remember(self, session: ChatSession, seconds: float) -> None:
        now = time.monotonic()
        self._local[session.id] = (now + seconds, session)
        self._local.move_to_end(session.id)
        # Copies are added in time order with (nearly) the same lifetime: lapsed ones lead.
        while self._local:
            deadline, _ = next(iter(self._local.values()))
            if deadline > now and len(self._local) <= self._max_local:
                break
            self._local.popitem(last=False)


def _decoded(raw: bytes | None) -> ChatSession | None:
    if raw is None:
        return None
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        # Sessions live minutes; one written by an incompatible release is simply gone.
        return None
