"""Readers' ratings of assistant replies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

from whalli.domain.model.feedback import Feedback


class FeedbackRepository(Protocol):
    async def put(self, feedback: Feedback) -> None:
        """Add or replace the user's feedback on the message (``MessageNotFound`` if the
        message does not exist)."""
        ...

    async def find(self, message_id: UUID, user_id: UUID) -> Feedback | None: ...

    async def remove(self, message_id: UUID, user_id: UUID) -> bool:
        """Whether there was feedback to remove."""
        ...

    async def of_user(self, user_id: UUID, message_ids: Sequence[UUID]) -> dict[UUID, Feedback]:
        """The user's feedback on those of ``message_ids`` they rated, by message id."""
        ...
