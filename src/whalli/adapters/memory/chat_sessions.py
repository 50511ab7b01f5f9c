"""In-process ``ChatSessionStore``; sessions vanish at their ``expires_at``."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.errors import ChatSessionNotFound
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.clock import Clock


class InMemoryChatSessionStore(ChatSessionStore):
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._sessions: dict[str, ChatSession] = {}

    async def save(self, session: ChatSession, now: datetime) -> None:
        if session.is_expired(now):
            self._sessions.pop(session.id, None)
            return
        self._sessions[session.id] = session

    async def get(self, session_id: str) -> ChatSession:
        session = self._sessions.get(session_id)
        if session is None:
            raise ChatSessionNotFound()
        if session.is_expired(self._clock.now()):
            del self._sessions[session_id]
            raise ChatSessionNotFound()
        return session

    async def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def live_session_ids(self, reply_message_ids: Collection[UUID]) -> dict[UUID, str]:
        wanted, now = set(reply_message_ids), self._clock.now()
        return {
            s.reply_message_id: s.id
            for s in self._sessions.values()
            if s.reply_message_id in wanted and not s.is_expired(now)
        }
