"""Feedback on replies, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.chat_imports import IMPORTED_PROVIDER
from whalli.domain.model.errors import MessageNotFound
from whalli.domain.model.feedback import Feedback, Rating
from whalli.ports.feedback import FeedbackRepository, ModelRatings


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

    async def by_model(self, *, since: datetime, until: datetime) -> list[ModelRatings]:
        tx = self._tx()
        rows: list[Feedback] = tx.select(
            "message_feedback", lambda f: since <= f.updated_at < until
        )
        counts: dict[str, list[int]] = {}
        for f in rows:
            message = tx.find("messages", f.message_id)
            imported = message.provider == IMPORTED_PROVIDER
            model = IMPORTED_PROVIDER if imported else message.model or ""
            up_down_comments = counts.setdefault(model, [0, 0, 0])
            up_down_comments[0 if f.rating is Rating.UP else 1] += 1
            up_down_comments[2] += f.comment is not None
        return [
            ModelRatings(model=model, up=up, down=down, comments=comments)
            for model, (up, down, comments) in sorted(counts.items())
        ]
