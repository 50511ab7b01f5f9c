"""Use cases: read a reply's earlier versions, and switch the chat's last reply to one of them.

A regeneration keeps the reply it replaces as an earlier version (``reply_versions``); these
let a reader see them, as a chat app's "< 2/3 >" does, and a writer go on from one.
"""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.chats import Message, MessageRole
from whalli.domain.model.errors import MessageNotFound, NothingToRegenerate, NotTheLastReply
from whalli.domain.model.feedback import Feedback
from whalli.domain.model.reply_versions import MAX_EARLIER_VERSIONS, ReplyVersion, last_exchange
from whalli.domain.services.chats.access import require_chat
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class ListReplyVersions(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID
    message_id: UUID  # a reply in the chat's conversation


class ReplyVersions(Value, frozen=True, kw_only=True):
    versions: list[ReplyVersion]  # in the order they were generated
    # reply id -> the caller's own feedback on that version
    feedback: dict[UUID, Feedback] = {}


class ListReplyVersionsHandler:
    """The earlier versions of one of a chat's replies (those regenerations replaced).

    Rules:
    - any member of the chat's project may read them (``require_chat``: anyone else gets
      ``ChatNotFound``);
    - ``message_id`` must be a reply in the chat's conversation (an earlier version itself, a
      user's message or another chat's reply: ``MessageNotFound``); a reply nothing replaced
      has none;
    - each comes with the question's text it answered and the caller's own feedback on it.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListReplyVersions) -> ReplyVersions:
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "read")
            messages = await uow.chats.list_messages(chat.id)
            question = _question_of(messages, command.message_id)
            versions = [] if question is None else await uow.chats.list_versions(question.id)
            ids = [v.reply.id for v in versions]
            feedback = await uow.feedback.of_user(command.user_id, ids) if ids else {}
        return ReplyVersions(versions=versions, feedback=feedback)


def _question_of(messages: list[Message], reply_id: UUID) -> Message | None:
    """The user's message the reply answers (``None``: it answers none, as an imported reply
    after another); ``MessageNotFound`` when the reply is not in the conversation."""
    for index, message in enumerate(messages):
        if message.id == reply_id and message.role is MessageRole.ASSISTANT:
            before = messages[index - 1] if index else None
            return before if before is not None and before.role is MessageRole.USER else None
    raise MessageNotFound()


class RestoreReplyVersion(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID
    version_id: UUID  # an earlier version of the chat's last reply


class RestoreReplyVersionHandler:
    """Make an earlier version the chat's last reply again.

    Rules:
    - the caller needs write access to the chat's project (as for a regeneration);
    - the chat is locked first, so a regeneration, a new message or another restore in the
      same chat run one after the other;
    - ``version_id`` must be an earlier version in this chat (else ``MessageNotFound``) of the
      answer to the chat's last user message (else ``NotTheLastReply``, 409: the messages after
      an earlier question were written from the reply it has now); restoring the reply the
      chat ends with changes nothing;
    - while the last reply is still being generated, ``ReplyInProgress`` (409);
    - the chat's last reply becomes an earlier version in its place (nothing is lost), and the
      question takes back the text the restored version answered, if an edit changed it
      since; the chat counts as updated. One transaction.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def execute(self, command: RestoreReplyVersion) -> None:
        now = self._clock.now()
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "write", lock=True)
            messages = await uow.chats.list_messages(chat.id)
            last = messages[-1] if messages else None
            if last is not None and last.id == command.version_id:
                if last.role is MessageRole.ASSISTANT:
                    return  # already the last reply
                raise MessageNotFound()
            version = await uow.chats.get_version(command.version_id)
            if version.reply.chat_id != chat.id:
                raise MessageNotFound()
            try:
                _, question, current = last_exchange(messages)
            except NothingToRegenerate:
                raise NotTheLastReply() from None
            if version.question_id != question.id:
                raise NotTheLastReply()
            # restored first: the current reply then takes its place among at most as many
            await uow.chats.restore_version(version.reply.id)
            if current is not None:
                await uow.chats.supersede_reply(
                    current.id, question_id=question.id, asked=question.content, now=now,
                    keep=MAX_EARLIER_VERSIONS,
                )  # fmt: skip
            if version.asked != question.content:
                question.edit(version.asked, now)
                await uow.chats.update_message(question)
            await uow.chats.touch(chat.id, now)
            await uow.commit()
