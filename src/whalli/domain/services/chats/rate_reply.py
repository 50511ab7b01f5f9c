"""Use case: a reader rates an assistant reply (thumbs up or down, and a comment), or takes
the rating back."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.chat_imports import IMPORTED_PROVIDER
from whalli.domain.model.chats import MessageRole
from whalli.domain.model.errors import MessageNotFound, ReplyInProgress
from whalli.domain.model.feedback import Feedback, Rating
from whalli.domain.services.chats.access import require_chat
from whalli.ports.chat_metrics import ChatMetrics
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork

RATING_REMOVED = "removed"  # the metrics label of a rating taken back
UNKNOWN_MODEL = "unknown"  # the metrics label of a reply that names no model
# ... and of an imported one: its model is the export's free text (``chatgpt/<slug>``), which
# would make a new series of the ratings counter per invented slug
IMPORTED_MODEL = "imported"


class RateReply(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID
    message_id: UUID
    rating: Rating | None  # None: take the rating back
    comment: str | None = None


class RateReplyHandler:
    """Record (or replace, or remove) the caller's feedback on a reply.

    Rules:
    - anyone who may read the chat may rate its replies, viewers included: feedback is each
      reader's own (one per reply and reader; ``GetChat`` shows each caller theirs); a chat
      they may not read answers ``ChatNotFound``;
    - only an assistant message of that chat is rated (else ``MessageNotFound``), once it is
      finished (complete, stopped or failed; else ``ReplyInProgress``);
    - a comment has at most ``COMMENT_MAX`` characters; rating again replaces the rating and
      the comment, keeping when it was first given; removing feedback that is not there is
      not an error;
    - feedback stays with its reply, also once a regeneration made it an earlier version
      (which may be rated too); it goes when the reply is deleted (with its chat, or as the
      oldest of too many versions);
    - each stored rating is counted once committed, by the reply's model (``imported`` for an
      imported reply, whose model is the export's free text) and the rating
      (``up``/``down``; a rating actually taken back counts as ``removed``); a refused request
      counts nothing.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock, metrics: ChatMetrics) -> None:
        self._uow = uow
        self._clock = clock
        self._metrics = metrics

    async def execute(self, command: RateReply) -> Feedback | None:
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "read")
            message = await uow.chats.get_message(command.message_id)
            if message.chat_id != chat.id or message.role is not MessageRole.ASSISTANT:
                raise MessageNotFound()
            model = message.model or UNKNOWN_MODEL
            if message.provider == IMPORTED_PROVIDER:
                model = IMPORTED_MODEL
            if command.rating is None:
                removed = await uow.feedback.remove(message.id, command.user_id)
                await uow.commit()
                if removed:
                    self._metrics.reply_rated(model=model, rating=RATING_REMOVED)
                return None
            if not message.status.is_final:
                raise ReplyInProgress("A reply is rated once it has finished.")
            earlier = await uow.feedback.find(message.id, command.user_id)
            feedback = Feedback.give(
                message_id=message.id, user_id=command.user_id, rating=command.rating,
                comment=command.comment, now=self._clock.now(), earlier=earlier,
            )  # fmt: skip
            await uow.feedback.put(feedback)
            await uow.commit()
        self._metrics.reply_rated(model=model, rating=feedback.rating.value)
        return feedback
