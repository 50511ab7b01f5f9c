"""A reader's rating of an assistant reply: thumbs up or down, with an optional comment."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from whalli.domain.model.base import Entity
from whalli.domain.model.errors import InvalidInput

COMMENT_MAX = 2000


class Rating(StrEnum):
    UP = "up"
    DOWN = "down"


class Feedback(Entity, kw_only=True):
    message_id: UUID
    user_id: UUID
    rating: Rating
    comment: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def give(
        cls, *, message_id: UUID, user_id: UUID, rating: Rating, comment: str | None,
        now: datetime, earlier: Feedback | None = None,
    ) -> Feedback:  # fmt: skip
        """The user's feedback on the message (replacing ``earlier``, whose creation it keeps);
        a blank comment is none; a comment has at most ``COMMENT_MAX`` characters, no NUL."""
        cleaned = comment.strip() if comment is not None else None
        if cleaned and len(cleaned) > COMMENT_MAX:
            raise InvalidInput(
                f"A comment has at most {COMMENT_MAX} characters.", field="comment",
                limit=COMMENT_MAX,
            )  # fmt: skip
        if cleaned and "\x00" in cleaned:
            raise InvalidInput("A comment may not contain the NUL character.", field="comment")
        return cls(
            message_id=message_id, user_id=user_id, rating=rating, comment=cleaned or None,
            created_at=earlier.created_at if earlier is not None else now, updated_at=now,
        )  # fmt: skip
