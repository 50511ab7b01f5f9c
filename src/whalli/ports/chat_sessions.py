"""Where open chat sessions live between ``start`` and the end of their stream."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.chat_sessions import ChatSession


class ChatSessionStore(Protocol):
    async def save(self, session: ChatSession, now: datetime) -> None:
        """Store the session until its ``expires_at``, with (when it names its reply) the
        pointer from its ``reply_message_id`` that ``live_session_ids`` reads, in the same
        round trip and with the same expiry."""
        ...

    async def get(self, session_id: str) -> ChatSession:
        """Raises ``ChatSessionNotFound`` when missing or expired."""
        ...

    async def delete(self, session_id: str) -> None:
        """Remove it, and its reply's pointer; missing sessions are fine."""
        ...

    async def live_session_ids(self, reply_message_ids: Collection[UUID]) -> dict[UUID, str]:
        """The id of the session streaming each of these replies, for those whose session is
        still alive (saved, not expired, not deleted); others are left out. One round trip at
        most, none for no ids. Callers check first that the caller may read the replies."""
        ...
