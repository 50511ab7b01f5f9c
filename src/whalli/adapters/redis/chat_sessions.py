"""``ChatSessionStore`` on Redis: one msgpack-encoded key per session, expiring with it."""

from __future__ import annotations

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
    def __init__(self, client: Redis, prefix: str = "whalli:chat-session:") -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, session_id: str) -> str:
        return self._prefix + session_id

    async def save(self, session: ChatSession, now: datetime) -> None:
        ttl_ms = int((session.expires_at - now).total_seconds() * 1000)
        with translated():
            if ttl_ms <= 0:
                # Already expired: make sure no earlier version of it stays readable.
                await self._client.delete(self._key(session.id))
                return
            await self._client.set(self._key(session.id), _encoder.encode(session), px=ttl_ms)

    async def get(self, session_id: str) -> ChatSession:
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
        with translated():
            await self._client.delete(self._key(session_id))
