"""Where open chat sessions live between ``start`` and the end of their stream."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from whalli.domain.model.chat_sessions import ChatSession


class ChatSessionStore(Protocol):
    async def save(self, session: ChatSession, now: datetime) -> None:
        """Store the session until its ``expires_at``."""
        ...

    async def get(self, session_id: str) -> ChatSession:
        """Raises ``ChatSessionNotFound`` when missing or expired."""
        ...

    async def delete(self, session_id: str) -> None:
        """Remove it; missing sessions are fine."""
        ...
