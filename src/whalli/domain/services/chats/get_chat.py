"""Use case: read one chat with its messages."""

from __future__ import annotations

import contextlib
import itertools
from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.chat_sessions import STREAM_PASS_TTL, StreamPass
from whalli.domain.model.chats import Chat, Message, MessageRole, MessageStatus
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.model.feedback import Feedback
from whalli.domain.model.principal import CredentialId
from whalli.domain.services.chats.access import require_chat
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.clock import Clock
from whalli.ports.stream_passes import StreamPasses
from whalli.ports.unit_of_work import UnitOfWork

_GENERATING = (MessageStatus.PENDING, MessageStatus.STREAMING)


class GetChat(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    chat_id: UUID
    # what the caller is authenticated by: their reader passes admit them while it is in force
    credential: CredentialId = CredentialId()
    # with the names of the files its messages attach (an export names them; a read does not)
    file_names: bool = False


class ChatWithMessages(Value, frozen=True, kw_only=True):
    chat: Chat
    messages: list[Message]  # oldest first
    # reply message id -> the caller's reader pass for it (to stream it from, or stop it), for
    # replies still being generated whose session is alive
    live_sessions: dict[UUID, str] = {}
    # reply message id -> the caller's own feedback on it (``RateReply``)
    feedback: dict[UUID, Feedback] = {}
    # reply message id -> how many earlier versions of it are kept (``reply_versions``)
    earlier_versions: dict[UUID, int] = {}
    # attached file id -> its name, for files still in the chat's project (``file_names``)
    file_names: dict[UUID, str] = {}


class GetChatHandler:
    """Return a chat and its messages, oldest first, to a member of its project.

    Rules:
    - any member of the chat's project may read it; anyone else gets ``ChatNotFound``, as for
      an id that does not exist (see ``chats.access``);
    - with ``file_names``, the names of the attached files still in the chat's project (which
      its readers may read), for an export; a file deleted since is not named;
    - replies still streaming are returned as stored (their status says so);
    - the caller's own feedback on replies comes with them (others' is not shown), and so does
      the number of earlier versions of each reply (the replies regenerations replaced);
    - only to a caller who may read the chat, each reply still ``pending``/``streaming`` whose
      session is alive comes with that session's id, so another device can attach to its
      stream (which lets every reader of the chat's project in: ``AttachStream``); a finished
      reply, or one whose session expired, has none. The store is asked once, and only when a
      reply is still being generated; if it cannot answer, the chat is returned without them;
    - what is shown is not the session id but a reader pass bound to the caller for
      ``STREAM_PASS_TTL`` (``StreamPass``) and to the credential they read it with (a pass
      alone admits nobody once that login session or API key ended): the id itself would
      stay a credential for whoever saw it, also after they lost access to the chat.
    """

    def __init__(
        self, uow: UnitOfWork, sessions: ChatSessionStore, passes: StreamPasses, clock: Clock
    ) -> None:
        self._uow, self._sessions, self._passes, self._clock = uow, sessions, passes, clock

    async def execute(self, command: GetChat) -> ChatWithMessages:
        async with self._uow as uow:
            chat = await require_chat(uow, command.chat_id, command.user_id, "read")
            messages = await uow.chats.list_messages(chat.id)
            replies = [m.id for m in messages if m.role is MessageRole.ASSISTANT]
            feedback = await uow.feedback.of_user(command.user_id, replies) if replies else {}
            counts = await uow.chats.version_counts(chat.id) if replies else {}
            names = await _file_names(uow, chat, messages) if command.file_names else {}
        generating = [
            m.id for m in messages if m.role is MessageRole.ASSISTANT and m.status in _GENERATING
        ]
        live: dict[UUID, str] = {}
        # the chat itself is in the database: without the store, it is read without session ids
        with contextlib.suppress(ServiceUnavailable):
            if generating:
                live = await self._sessions.live_session_ids(generating)
        if live:
            expires_at = self._clock.now() + STREAM_PASS_TTL
            live = {
                reply_id: self._passes.issue(
                    StreamPass(
                        reply_message_id=reply_id,
                        user_id=command.user_id,
                        expires_at=expires_at,
                        credential=command.credential,
                    )
                )
                for reply_id in live
            }
        return ChatWithMessages(
            chat=chat, messages=messages, live_sessions=live, feedback=feedback,
            earlier_versions=_per_reply(messages, counts), file_names=names,
        )  # fmt: skip


async def _file_names(uow: UnitOfWork, chat: Chat, messages: list[Message]) -> dict[UUID, str]:
    """The names of the files the messages attach that are still in the chat's project (every
    reader of the chat may read them); a file deleted since has none: its name is not kept."""
    wanted = {i for m in messages for i in m.attachment_ids}
    found = await uow.attachments.get_many(wanted) if wanted else {}
    return {i: a.filename for i, a in found.items() if a.project_id == chat.project_id}


def _per_reply(messages: list[Message], per_question: dict[UUID, int]) -> dict[UUID, int]:
    """Earlier versions counted per question, given to the reply that answers it now."""
    found: dict[UUID, int] = {}
    for before, message in itertools.pairwise(messages):
        if message.role is MessageRole.ASSISTANT and before.id in per_question:
            found[message.id] = per_question[before.id]
    return found
