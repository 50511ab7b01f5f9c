"""Feedback on replies, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.errors import MessageNotFound
from whalli.domain.model.feedback import Feedback
from whalli.ports.feedback import FeedbackRepository


class InMemoryFeedbackRepository(MemoryRepository, FeedbackRepository):
    async def put(self, feedback: Feedback) -> None:
        key = (feedback.message_id, feedback.user_id)
        tx = self._tx()
        if tx.find("message_feedback", key) is None:
            tx.insert("message_feedback", key, feedback)
        else:
            tx.replace("message_feedback", key, feedback, MessageNotFound)

    async def find(self, message_id: UUID, user_id: UUID) -> Feedback | None:
        found: Feedback | None = self._tx().find("message_feedback", (message_id, user_id))
        return found

    async def remove(self, message_id: UUID, user_id: UUID) -> bool:
        tx = self._tx()
        if tx.find("message_feedback", (message_id, user_id)) is None:
            return False
        tx.delete("message_feedback", (message_id, user_id), MessageNotFound)
        return True

    async def of_user(self, user_id: UUID, message_ids: Sequence[UUID]) -> dict[UUID, Feedback]:
        wanted = set(message_ids)
        rows: list[Feedback] = self._tx().select(
            "message_feedback", lambda f: f.user_id == user_id and f.message_id in wanted
        )
        return {f.message_id: f for f in rows}
