"""Readers' ratings of assistant replies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.base import Value
from whalli.domain.model.feedback import Feedback


class ModelRatings(Value, frozen=True, kw_only=True):
    """How readers rated one model's replies."""

    model: str
    up: int
    down: int
    comments: int  # ratings that came with a comment


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

    async def by_model(self, *, since: datetime, until: datetime) -> list[ModelRatings]:
        """Every rating given (or last changed) from ``since`` up to (not including) ``until``,
        counted per model of the rated reply, ordered by model: ``""`` for a reply naming none,
        and ``IMPORTED_PROVIDER`` (``imported``) for every imported one, whose model is free
        text from the uploaded file (as the ratings metric labels it)."""
        ...
