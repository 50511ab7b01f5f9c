"""Storage of chats and their messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.chats import Chat, Message
from whalli.domain.model.reply_versions import ReplyVersion
from whalli.ports.usage import UsageRecord


class ChatRepository(Protocol):
    async def add(self, chat: Chat) -> None: ...

    async def get(self, chat_id: UUID) -> Chat:
        """Raises ``ChatNotFound``."""
        ...

    async def lock(self, chat_id: UUID) -> Chat:
        """The chat, locked until the unit of work ends against whoever changes its messages
        with it locked too, and against its deletion (call inside ``async with uow``). Use cases
        that read a chat's messages and then add or remove some lock it first, so that they
        run one after the other. Raises ``ChatNotFound`` (also when it was deleted while
        waiting)."""
        ...

    async def touch(self, chat_id: UUID, now: datetime, *, unarchive: bool = False) -> None:
        """Mark the chat updated at ``now`` (never moving it back), and with ``unarchive`` no
        longer archived, in the same write; nothing else changes, so a rename committed
        meanwhile stays. Raises ``ChatNotFound``."""
        ...

    async def update(self, chat: Chat) -> None:
        """Raises ``ChatNotFound``."""
        ...

    async def set_title_if(self, chat_id: UUID, *, expected: str, title: str) -> bool:
        """Compare-and-set: give the chat ``title`` only if its title is still ``expected``
        (one statement in Postgres, atomic by itself). Nothing else changes, ``updated_at``
        neither (the chat keeps its place in the list). False when the title is no longer
        ``expected`` (renamed meanwhile) or the chat is gone."""
        ...

    async def delete(self, chat_id: UUID) -> None:
        """Delete the chat with its messages. Raises ``ChatNotFound``."""
        ...

    async def list_for_project(
        self,
        project_id: UUID,
        *,
        limit: int,
        before: tuple[datetime, UUID] | None = None,
        archived: bool | None = None,
        pinned: bool | None = None,
    ) -> list[Chat]:
        """Newest first (by ``updated_at``, then id); ``before`` is the cursor of the last seen.
        ``archived`` / ``pinned``: only the chats that are (``True``) or are not (``False``);
        ``None``: both."""
        ...

    async def add_message(self, message: Message) -> None:
        """Raises ``ChatNotFound`` when the chat does not exist."""
        ...

    async def add_messages(self, messages: Sequence[Message]) -> None:
        """Store several messages at once (one statement in Postgres), all or none.

        Raises ``ChatNotFound`` when a chat of one of them does not exist, else ``Conflict``
        when an id is taken (or given twice); either way nothing is stored and the work can go
        on, as with ``add_message``. An empty sequence stores nothing.
        """
        ...

    async def add_with_messages(self, chat: Chat, messages: Sequence[Message]) -> None:
        """Store a new chat with its first messages at once (one statement in Postgres), all
        or none. Raises ``ValueError`` when a message belongs to another chat, ``Conflict``
        when an id is taken and ``ProjectNotFound`` when the chat's project does not exist;
        after such an error leave the unit of work (the transaction may be aborted)."""
        ...

    async def get_message(self, message_id: UUID) -> Message:
        """Raises ``MessageNotFound``."""
        ...

    async def update_message(self, message: Message) -> None:
        """Raises ``MessageNotFound``."""
        ...

    async def delete_message(self, message_id: UUID) -> None:
        """Delete one message (its usage records stay, no longer pointing at it). Raises
        ``MessageNotFound`` when it does not exist, also when another transaction deleted it
        first (this one waits for that one)."""
        ...

    async def save_progress(
        self, message_id: UUID, content: str, now: datetime, reasoning: str = ""
    ) -> bool:
        """Store what a reply being generated has so far (status ``streaming``): its text and
        a reasoning model's thinking, unless it is
        already final or gone: then nothing changes and the answer is False. One statement
        (may run in ``UnitOfWork.autocommit``)."""
        ...

    async def finish_reply(self, message: Message, usage: UsageRecord) -> None:
        """Save a finished reply (``update_message``) and add its usage record, in one
        statement in Postgres: atomic by itself, so it may run in ``UnitOfWork.autocommit``.
        Raises ``MessageNotFound`` (nothing recorded then), ``Conflict`` when the record's id
        is taken (nothing written: a retry of a write that was done) and ``ValueError`` when
        the record is about another message."""
        ...

    async def list_messages(self, chat_id: UUID) -> list[Message]:
        """The conversation, oldest first: earlier versions of replies are left out."""
        ...

    async def supersede_reply(
        self, reply_id: UUID, *, question_id: UUID, asked: str, now: datetime, keep: int
    ) -> None:
        """Take a reply out of the conversation as an earlier version of the answer to the
        user's message ``question_id`` (``asked``: that message's text it answered), replaced
        at ``now``. Of that question's earlier versions only ``keep`` stay, this reply first,
        then those generated last: the others are deleted, with their feedback. Raises
        ``MessageNotFound`` when the reply does not exist or is already an earlier version."""
        ...

    async def list_versions(self, question_id: UUID) -> list[ReplyVersion]:
        """The earlier versions of the answer to a user's message, in the order they were
        generated."""
        ...

    async def get_version(self, reply_id: UUID) -> ReplyVersion:
        """Raises ``MessageNotFound`` when there is no such earlier version (a reply in the
        conversation is not one)."""
        ...

    async def restore_version(self, reply_id: UUID) -> None:
        """Put an earlier version back into the conversation. Raises ``MessageNotFound`` when
        there is no such earlier version."""
        ...

    async def version_counts(self, chat_id: UUID) -> dict[UUID, int]:
        """User message id -> how many earlier versions of its answer the chat keeps (only
        messages that have some)."""
        ...

    async def unfinished_replies(self, chat_id: UUID) -> list[UUID]:
        """The ids of the chat's assistant replies still ``pending`` or ``streaming`` (being
        generated, or abandoned by a process that died), in no particular order. One read."""
        ...

    async def unfinished_replies_in_project(self, project_id: UUID) -> list[UUID]:
        """``unfinished_replies`` of every chat of the project, in one read."""
        ...

    async def unfinished_replies_of_user(self, user_id: UUID) -> list[UUID]:
        """``unfinished_replies`` of every chat the user started, in any project, in one read."""
        ...

    async def fail_reply(self, message_id: UUID, now: datetime, error: str) -> bool:
        """Finish one assistant reply still ``pending`` or ``streaming`` as ``failed``, as
        ``fail_abandoned_replies`` does (content kept, ``finish_reason`` ``"error"``, ``error``,
        no usage record). False when it is already final or gone. One statement."""
        ...

    async def fail_abandoned_replies(
        self, updated_before: datetime, now: datetime, error: str, *, limit: int
    ) -> list[UUID]:
        """Finish as ``failed`` the assistant replies still ``pending`` or ``streaming`` that
        were last updated (created, or a progress checkpoint) before ``updated_before``: least
        recently updated first, at most ``limit``, in one statement in Postgres. Each keeps
        its content, usage and timings and gets ``finish_reason`` ``"error"``, ``error`` and
        ``updated_at`` ``now``; no usage record is added. Replies another unit of work holds
        locked are skipped, so two calls at once never finish the same reply. Returns their
        ids in that order. Raises ``InvalidInput`` when ``limit`` is negative."""
        ...
