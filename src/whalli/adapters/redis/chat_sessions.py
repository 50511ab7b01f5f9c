"""``ChatSessionStore`` on Redis: one msgpack-encoded key per session, expiring with it.

With ``local_copies_s`` the store also keeps, in this process, a copy of each session it saved,
for that long (never past the session's expiry): the browser's stream request that follows its
start nearly always reaches the same API process, and then finds its session without a round
trip. Sessions never change once saved, so a copy is never stale; the one exception is
``delete`` called by another process, which this process sees once its copy lapses (no use case
deletes sessions today).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import datetime

import msgspec
from redis.asyncio import Redis

from whalli.adapters.redis._values import as_bytes
from whalli.adapters.redis.errors import translated
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
        local_copies_s: float = 0.0,
        max_local_copies: int = 10_000,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._local_s, self._max_local = local_copies_s, max_local_copies
        # session id -> (monotonic deadline, session), oldest first
        self._local: OrderedDict[str, tuple[float, ChatSession]] = OrderedDict()

    def _key(self, session_id: str) -> str:
        return self._prefix + session_id

    async def save(self, session: ChatSession, now: datetime) -> None:
        ttl_ms = int((session.expires_at - now).total_seconds() * 1000)
        self._local.pop(session.id, None)
        with translated():
            if ttl_ms <= 0:
                # Already expired: make sure no earlier version of it stays readable.
                await self._client.delete(self._key(session.id))
                return
            await self._client.set(self._key(session.id), _encoder.encode(session), px=ttl_ms)
        if self._local_s > 0:
            self._remember(session, min(self._local_s, ttl_ms / 1000))

    async def get(self, session_id: str) -> ChatSession:
        local = self._local.get(session_id)
        if local is not None:
            if local[0] > time.monotonic():
                return local[1]
            del self._local[session_id]
        with translated():
            raw = as_bytes(await self._client.get(self._key(session_id)))
        if raw is None:
            raise ChatSessionNotFound()
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError as e:
            # Sessions live minutes; one written by an incompatible release is simply gone.
            raise ChatSessionNotFound() from e

    async def delete(self, session_id: str) -> None:
        self._local.pop(session_id, None)
        with translated():
            await self._client.delete(self._key(session_id))

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
