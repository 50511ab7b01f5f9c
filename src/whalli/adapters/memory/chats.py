"""Chats and messages, in memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

import msgspec

from whalli.adapters.memory._repository import MemoryRepository, check_limit
from whalli.domain.model.chats import Chat, Message, MessageRole, MessageStatus
from whalli.domain.model.errors import ChatNotFound, Conflict, MessageNotFound
from whalli.domain.model.reply_versions import ReplyVersion
from whalli.ports.chats import ChatRepository
from whalli.ports.usage import UsageRecord


class VersionMark(msgspec.Struct, kw_only=True):
    """A reply out of the conversation (the ``reply_versions`` table; in Postgres, the
    ``answers``, ``asked`` and ``superseded_at`` columns of ``messages``)."""

    id: UUID  # the reply's
    question_id: UUID
    asked: str
    replaced_at: datetime


class InMemoryChatRepository(MemoryRepository, ChatRepository):
    async def add(self, chat: Chat) -> None:
        self._tx().insert("chats", chat.id, chat)

    async def get(self, chat_id: UUID) -> Chat:
        chat: Chat = self._tx().get("chats", chat_id, ChatNotFound)
        return chat

    async def lock(self, chat_id: UUID) -> Chat:
        return await self.get(chat_id)  # (one task writes the store at a time)

    async def touch(self, chat_id: UUID, now: datetime, *, unarchive: bool = False) -> None:
        chat = msgspec.structs.replace(await self.get(chat_id))
        chat.updated_at = max(chat.updated_at, now)
        if unarchive:
            chat.archived_at = None
        self._tx().replace("chats", chat.id, chat, ChatNotFound)

    async def update(self, chat: Chat) -> None:
        self._tx().replace("chats", chat.id, chat, ChatNotFound)

    async def set_title_if(self, chat_id: UUID, *, expected: str, title: str) -> bool:
        try:
            chat = msgspec.structs.replace(await self.get(chat_id))
        except ChatNotFound:
            return False
        if chat.title != expected:
            return False
        chat.title = title
        self._tx().replace("chats", chat.id, chat, ChatNotFound)
        return True

    async def delete(self, chat_id: UUID) -> None:
        self._tx().delete("chats", chat_id, ChatNotFound)

    async def list_for_project(
        self,
        project_id: UUID,
        *,
        limit: int,
        before: tuple[datetime, UUID] | None = None,
        archived: bool | None = None,
        pinned: bool | None = None,
    ) -> list[Chat]:
        check_limit(limit)
        found: list[Chat] = self._tx().select(
            "chats",
            lambda c: (
                c.project_id == project_id
                and (before is None or (c.updated_at, c.id) < before)
                and archived in (None, c.archived)
                and pinned in (None, c.pinned)
            ),
        )
        return sorted(found, key=lambda c: (c.updated_at, c.id), reverse=True)[:limit]

    async def add_message(self, message: Message) -> None:
        self._tx().insert("messages", message.id, message)

    async def add_messages(self, messages: Sequence[Message]) -> None:
        tx = self._tx()
        chats, stored = tx.table("chats"), tx.table("messages")
        if any(m.chat_id not in chats for m in messages):
            raise ChatNotFound()
        ids = {m.id for m in messages}
        if len(ids) < len(messages) or any(i in stored for i in ids):
            raise Conflict("This id is already taken.")
        for message in messages:
            tx.insert("messages", message.id, message)

    async def add_with_messages(self, chat: Chat, messages: Sequence[Message]) -> None:
        if any(m.chat_id != chat.id for m in messages):
            raise ValueError("every message must belong to the new chat")
        tx = self._tx()
        ids = {m.id for m in messages}
        if len(ids) < len(messages) or any(i in tx.table("messages") for i in ids):
            raise Conflict("This id is already taken.")
        tx.insert("chats", chat.id, chat)
        for message in messages:
            tx.insert("messages", message.id, message)

    async def get_message(self, message_id: UUID) -> Message:
        message: Message = self._tx().get("messages", message_id, MessageNotFound)
        return message

    async def update_message(self, message: Message) -> None:
        self._tx().replace("messages", message.id, message, MessageNotFound)

    async def delete_message(self, message_id: UUID) -> None:
        self._tx().delete("messages", message_id, MessageNotFound)

    async def save_progress(
        self, message_id: UUID, content: str, now: datetime, reasoning: str = ""
    ) -> bool:
        tx = self._tx()
        message: Message | None = tx.find("messages", message_id)
        if message is None or message.status.is_final:
            return False
        message.status, message.content, message.updated_at = (
            MessageStatus.STREAMING, content, now,
        )  # fmt: skip
        message.reasoning = reasoning
        tx.replace("messages", message_id, message, MessageNotFound)
        return True

    async def finish_reply(self, message: Message, usage: UsageRecord) -> None:
        if usage.message_id != message.id:
            raise ValueError("the usage record must be about the reply")
        tx = self._tx()
        tx.replace("messages", message.id, message, MessageNotFound)
        tx.insert("usage_records", usage.id, usage)

    async def list_messages(self, chat_id: UUID) -> list[Message]:
        tx = self._tx()
        versions = tx.table("reply_versions")
        found: list[Message] = tx.select(
            "messages", lambda m: m.chat_id == chat_id and m.id not in versions
        )
        return sorted(found, key=lambda m: (m.created_at, m.id))

    async def supersede_reply(
        self, reply_id: UUID, *, question_id: UUID, asked: str, now: datetime, keep: int
    ) -> None:
        check_limit(keep)
        tx = self._tx()
        if tx.find("messages", reply_id) is None or reply_id in tx.table("reply_versions"):
            raise MessageNotFound()
        mark = VersionMark(id=reply_id, question_id=question_id, asked=asked, replaced_at=now)
        tx.insert("reply_versions", reply_id, mark)
        versions = await self.list_versions(question_id)  # the reply just replaced, then newest
        versions.sort(key=lambda v: (v.reply.id == reply_id, v.reply.created_at, v.reply.id))
        for version in versions[: max(0, len(versions) - keep)]:
            tx.delete("messages", version.reply.id, MessageNotFound)

    async def list_versions(self, question_id: UUID) -> list[ReplyVersion]:
        marks = self._tx().select("reply_versions", lambda v: v.question_id == question_id)
        versions = [self._version(mark) for mark in marks]
        return sorted(versions, key=lambda v: (v.reply.created_at, v.reply.id))

    async def get_version(self, reply_id: UUID) -> ReplyVersion:
        mark: VersionMark = self._tx().get("reply_versions", reply_id, MessageNotFound)
        return self._version(mark)

    async def restore_version(self, reply_id: UUID) -> None:
        self._tx().delete("reply_versions", reply_id, MessageNotFound)

    async def version_counts(self, chat_id: UUID) -> dict[UUID, int]:
        tx = self._tx()
        counts: dict[UUID, int] = {}
        for mark in tx.table("reply_versions").values():
            reply: Message | None = tx.find("messages", mark.id)
            if reply is not None and reply.chat_id == chat_id:
                counts[mark.question_id] = counts.get(mark.question_id, 0) + 1
        return counts

    def _version(self, mark: VersionMark) -> ReplyVersion:
        reply: Message = self._tx().get("messages", mark.id, MessageNotFound)
        return ReplyVersion(
            reply=reply, question_id=mark.question_id, asked=mark.asked,
            replaced_at=mark.replaced_at,
        )  # fmt: skip

    async def unfinished_replies(self, chat_id: UUID) -> list[UUID]:
        return self._unfinished(lambda m: m.chat_id == chat_id)

    async def unfinished_replies_in_project(self, project_id: UUID) -> list[UUID]:
        chats: list[Chat] = self._tx().select("chats", lambda c: c.project_id == project_id)
        ids = {c.id for c in chats}
        return self._unfinished(lambda m: m.chat_id in ids)

    async def unfinished_replies_of_user(self, user_id: UUID) -> list[UUID]:
        chats: list[Chat] = self._tx().select("chats", lambda c: c.user_id == user_id)
        ids = {c.id for c in chats}
        return self._unfinished(lambda m: m.chat_id in ids)

    def _unfinished(self, where: Callable[[Message], bool]) -> list[UUID]:
        found: list[Message] = self._tx().select(
            "messages",
            lambda m: m.role is MessageRole.ASSISTANT and not m.status.is_final and where(m),
        )
        return [m.id for m in found]

    async def fail_reply(self, message_id: UUID, now: datetime, error: str) -> bool:
        tx = self._tx()
        latest: Message | None = tx.find("messages", message_id)
        if latest is None or latest.role is not MessageRole.ASSISTANT or latest.status.is_final:
            return False
        latest = msgspec.structs.replace(latest)
        latest.finish(
            status=MessageStatus.FAILED, content=latest.content, usage=latest.usage, now=now,
            finish_reason="error", cost_usd=latest.cost_usd, cached=latest.cached,
            ttft_ms=latest.ttft_ms, total_ms=latest.total_ms, error=error,
        )  # fmt: skip
        tx.replace("messages", latest.id, latest, MessageNotFound)
        return True

    async def fail_abandoned_replies(
        self, updated_before: datetime, now: datetime, error: str, *, limit: int
    ) -> list[UUID]:
        check_limit(limit)
        tx = self._tx()
        found: list[Message] = tx.select("messages", lambda m: _abandoned(m, updated_before))
        failed: list[UUID] = []
        for abandoned in sorted(found, key=lambda m: (m.updated_at, m.id)):
            if len(failed) == limit:
                break
            if not await tx.try_lock("messages", abandoned.id):
                continue
            latest: Message | None = tx.find("messages", abandoned.id)  # as the lock read it
            if latest is None or not _abandoned(latest, updated_before):
                continue
            latest.finish(
                status=MessageStatus.FAILED, content=latest.content, usage=latest.usage,
                now=now, finish_reason="error", cost_usd=latest.cost_usd, cached=latest.cached,
                ttft_ms=latest.ttft_ms, total_ms=latest.total_ms, error=error,
            )  # fmt: skip
            tx.replace("messages", latest.id, latest, MessageNotFound)
            failed.append(latest.id)
        return failed


def _abandoned(message: Message, updated_before: datetime) -> bool:
    return (
        message.role is MessageRole.ASSISTANT
        and not message.status.is_final
        and message.updated_at < updated_before
    )
