"""Chats and messages in Postgres."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import (
    ID_TAKEN,
    PostgresRepository,
    Row,
    assignments,
    check_limit,
    columns,
    placeholders,
)
from whalli.domain.model.chats import Chat, GenerationParams, Message
from whalli.domain.model.errors import ChatNotFound, Conflict, MessageNotFound
from whalli.domain.model.reply_versions import ReplyVersion
from whalli.ports.chats import ChatRepository
from whalli.ports.usage import UsageRecord

_CHAT_COLUMNS = (
    "id", "project_id", "user_id", "title", "created_at", "updated_at", "system_prompt",
    "pinned_at", "archived_at",
)  # fmt: skip
_SELECT_CHAT = f"SELECT {columns(_CHAT_COLUMNS)} FROM chats"
_INSERT_CHAT = (
    f"INSERT INTO chats ({columns(_CHAT_COLUMNS)}) VALUES ({placeholders(_CHAT_COLUMNS)})"
)
_UPDATE_CHAT = f"UPDATE chats SET {assignments(_CHAT_COLUMNS[1:])} WHERE id = %(id)s"
_RECENT = "ORDER BY updated_at DESC, id DESC LIMIT %(limit)s"
_TOUCH = "UPDATE chats SET updated_at = GREATEST(updated_at, %(now)s) WHERE id = %(id)s"
_SET_TITLE_IF = "UPDATE chats SET title = %(title)s WHERE id = %(id)s AND title = %(expected)s"
_UNARCHIVE_AND_TOUCH = (
    "UPDATE chats SET updated_at = GREATEST(updated_at, %(now)s), archived_at = NULL "
    "WHERE id = %(id)s"
)
# Filters of a project's list, as literal conditions: `archived_at IS NULL` lets Postgres use
# the partial index of 0011 for the default list.
_ARCHIVED = {True: "archived_at IS NOT NULL", False: "archived_at IS NULL"}
_PINNED = {True: "pinned_at IS NOT NULL", False: "pinned_at IS NULL"}

# Column -> SQL type: the insert below selects its values, so untyped NULLs need a cast.
_MESSAGE_TYPES = {
    "id": "uuid",
    "chat_id": "uuid",
    "role": "text",
    "content": "text",
    "status": "text",
    "model": "text",
    "provider": "text",
    "prompt_tokens": "bigint",
    "completion_tokens": "bigint",
    "cached_prompt_tokens": "bigint",
    "cache_write_tokens": "bigint",
    "reasoning_tokens": "bigint",
    "cost_usd": "double precision",
    "cached": "boolean",
    "finish_reason": "text",
    "ttft_ms": "bigint",
    "total_ms": "bigint",
    "attachment_ids": "uuid[]",
    "error": "text",
    "reasoning": "text",
    "params": "jsonb",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
}
_MESSAGE_COLUMNS = tuple(_MESSAGE_TYPES)
# The reply's TokenUsage fields kept, each in a column of the same name (the split of its cache
# writes by how long they are kept is not: its cost counts it)
_STORED_USAGE = (
    "prompt_tokens", "completion_tokens", "cached_prompt_tokens", "cache_write_tokens",
    "reasoning_tokens",
)  # fmt: skip
_SELECT_MESSAGE = f"SELECT {columns(_MESSAGE_COLUMNS)} FROM messages"
# Inserting only when the chat exists reports a missing chat without aborting the transaction.
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({columns(_MESSAGE_COLUMNS)}) "
    f"SELECT {', '.join(f'%({c})s::{t}' for c, t in _MESSAGE_TYPES.items())} "
    "FROM chats WHERE chats.id = %(chat_id)s ON CONFLICT (id) DO NOTHING"
)
_MESSAGE_COLUMN_LIST = columns(_MESSAGE_COLUMNS)


def _message_rows(count: int) -> str:
    """``count`` typed VALUES rows of message parameters (``<column>_<index>``)."""
    return ", ".join(
        "(" + ", ".join(f"%({c}_{i})s::{t}" for c, t in _MESSAGE_TYPES.items()) + ")"
        for i in range(count)
    )


@functools.lru_cache(maxsize=64)  # built once per message count, not per insert
def _insert_messages(count: int) -> str:
    """One statement that inserts ``count`` messages (parameters ``<column>_<index>``) only if
    every chat exists and every id is free, and returns those two facts: the expected failures
    are reported without aborting the transaction, as ``add_message`` does. (A concurrent
    insert of the same id, or deletion of the chat, still fails the statement: ``translated``
    turns that into ``Conflict`` or ``ChatNotFound``.) 23 parameters a message: Postgres takes
    65535 parameters, so at most some 2800 messages a call."""
    rows = _message_rows(count)
    return (
        f"WITH new ({_MESSAGE_COLUMN_LIST}) AS (VALUES {rows}), "
        # Correlated EXISTS: a primary-key lookup per new row, never a scan of messages.
        "found AS (SELECT bool_and(EXISTS (SELECT FROM chats c WHERE c.id = new.chat_id)) "
        "AS chats_exist, bool_and(NOT EXISTS (SELECT FROM messages m WHERE m.id = new.id)) "
        "AND count(DISTINCT new.id) = count(*) AS ids_free FROM new), "
        f"added AS (INSERT INTO messages ({_MESSAGE_COLUMN_LIST}) SELECT new.* FROM new, found "
        "WHERE found.chats_exist AND found.ids_free) "
        "SELECT chats_exist, ids_free FROM found"
    )


@functools.lru_cache(maxsize=64)
def _insert_chat_with_messages(count: int) -> str:
    """One statement: the chat (parameters named as its columns) and ``count`` messages
    (``<column>_<index>``). The messages' foreign key is checked at the end of the statement,
    so it sees the chat inserted beside them."""
    rows = _message_rows(count)
    return (
        f"WITH new_chat AS ({_INSERT_CHAT}) "
        f"INSERT INTO messages ({_MESSAGE_COLUMN_LIST}) VALUES {rows}"
    )


_UPDATE_MESSAGE = f"UPDATE messages SET {assignments(_MESSAGE_COLUMNS[1:])} WHERE id = %(id)s"
_USAGE_COLUMNS = tuple(UsageRecord.__struct_fields__)
# The reply and its usage record in one statement: the record is inserted only when the
# update found the message (data-modifying CTEs always run to completion, read or not).
_FINISH_REPLY = (
    f"WITH updated AS ({_UPDATE_MESSAGE} RETURNING id), "
    f"recorded AS (INSERT INTO usage_records ({columns(_USAGE_COLUMNS)}) "
    f"SELECT {', '.join(f'%(usage_{c})s' for c in _USAGE_COLUMNS)} FROM updated) "
    "SELECT count(*) AS updated FROM updated"
)

_SAVE_PROGRESS = (
    "UPDATE messages SET status = 'streaming', content = %(content)s, "
    "reasoning = %(reasoning)s, updated_at = %(now)s "
    "WHERE id = %(id)s AND status IN ('pending', 'streaming')"
)

# Pick and finish in one statement: the abandoned replies are locked (rows a generator finishing
# its reply or another sweeper holds are skipped), finished and returned, least recently updated
# first.
_UNFINISHED = "status IN ('pending', 'streaming')"  # as the partial index of 0007
_FAIL_REPLY = (
    "UPDATE messages SET status = 'failed', finish_reason = 'error', error = %(error)s, "
    f"updated_at = %(now)s WHERE id = %(id)s AND role = 'assistant' AND {_UNFINISHED}"
)
_UNFINISHED_OF_CHAT = (
    f"SELECT id FROM messages WHERE chat_id = %(id)s AND role = 'assistant' AND {_UNFINISHED}"
)
_UNFINISHED_IN_PROJECT = (
    "SELECT m.id FROM messages m JOIN chats c ON c.id = m.chat_id WHERE c.project_id = %(id)s "
    f"AND m.role = 'assistant' AND m.{_UNFINISHED}"
)
_UNFINISHED_OF_USER = (
    "SELECT m.id FROM messages m JOIN chats c ON c.id = m.chat_id WHERE c.user_id = %(id)s "
    f"AND m.role = 'assistant' AND m.{_UNFINISHED}"
)
_FAIL_ABANDONED = (
    "WITH abandoned AS (SELECT id, updated_at FROM messages "
    f"WHERE {_UNFINISHED} AND role = 'assistant' AND updated_at < %(before)s "
    "ORDER BY updated_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
    "failed AS (UPDATE messages m SET status = 'failed', finish_reason = 'error', "
    "error = %(error)s, updated_at = %(now)s FROM abandoned WHERE m.id = abandoned.id "
    "RETURNING m.id, abandoned.updated_at AS touched) "
    "SELECT id FROM failed ORDER BY touched, id"
)


# Earlier versions of replies (0020): `answers` (their question) is set on them only.
_IN_CONVERSATION = "answers IS NULL"
_SUPERSEDE = (
    "UPDATE messages SET answers = %(question_id)s, asked = %(asked)s, superseded_at = %(now)s "
    "WHERE id = %(id)s AND answers IS NULL"
)
# kept: the reply just replaced, then the others generated last (a restored reply keeps its
# old created_at: replaced again, it is still the one kept)
_DROP_OLD_VERSIONS = (
    "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE answers = %(question_id)s "
    "ORDER BY id = %(id)s DESC, created_at DESC, id DESC OFFSET %(keep)s)"
)
_VERSION_COLUMNS = (*_MESSAGE_COLUMNS, "answers", "asked", "superseded_at")
_SELECT_VERSION = f"SELECT {columns(_VERSION_COLUMNS)} FROM messages"
_RESTORE = (
    "UPDATE messages SET answers = NULL, asked = NULL, superseded_at = NULL "
    "WHERE id = %(id)s AND answers IS NOT NULL"
)
_VERSION_COUNTS = (
    "SELECT answers, count(*) AS versions FROM messages "
    "WHERE chat_id = %(chat_id)s AND answers IS NOT NULL GROUP BY answers"
)


def _message_params(message: Message) -> dict[str, Any]:
    params = msgspec.structs.asdict(message)
    usage = params.pop("usage")
    params.update((name, getattr(usage, name)) for name in _STORED_USAGE)
    params["attachment_ids"] = list(message.attachment_ids)
    params["params"] = _params_json(message.params)
    return params


def _params_json(params: GenerationParams) -> str:
    """A reply's parameters as stored: only those set."""
    given = {k: v for k, v in msgspec.structs.asdict(params).items() if v is not None}
    return msgspec.json.encode(given).decode()


def _version(row: Row) -> ReplyVersion:
    question_id, asked, replaced_at = row.pop("answers"), row.pop("asked"), row.pop("superseded_at")
    return ReplyVersion(
        reply=_message(row), question_id=question_id, asked=asked, replaced_at=replaced_at
    )


def _message(row: Row) -> Message:
    row["usage"] = {name: row.pop(name) for name in _STORED_USAGE}
    return msgspec.convert(row, Message)


class PostgresChatRepository(PostgresRepository, ChatRepository):
    async def add(self, chat: Chat) -> None:
        await self._run(_INSERT_CHAT, msgspec.structs.asdict(chat))

    async def get(self, chat_id: UUID) -> Chat:
        row = await self._one(f"{_SELECT_CHAT} WHERE id = %(id)s", {"id": chat_id})
        if row is None:
            raise ChatNotFound()
        return msgspec.convert(row, Chat)

    async def lock(self, chat_id: UUID) -> Chat:
        # NO KEY UPDATE: messages can still be inserted by the unit of work holding it (their
        # foreign key takes KEY SHARE), but a DELETE of the chat waits for it.
        query = f"{_SELECT_CHAT} WHERE id = %(id)s FOR NO KEY UPDATE"
        row = await self._one(query, {"id": chat_id})
        if row is None:
            raise ChatNotFound()
        return msgspec.convert(row, Chat)

    async def touch(self, chat_id: UUID, now: datetime, *, unarchive: bool = False) -> None:
        query = _UNARCHIVE_AND_TOUCH if unarchive else _TOUCH
        if await self._run(query, {"id": chat_id, "now": now}) == 0:
            raise ChatNotFound()

    async def update(self, chat: Chat) -> None:
        if await self._run(_UPDATE_CHAT, msgspec.structs.asdict(chat)) == 0:
            raise ChatNotFound()

    async def set_title_if(self, chat_id: UUID, *, expected: str, title: str) -> bool:
        params = {"id": chat_id, "expected": expected, "title": title}
        return await self._run(_SET_TITLE_IF, params) == 1

    async def delete(self, chat_id: UUID) -> None:
        if await self._run("DELETE FROM chats WHERE id = %(id)s", {"id": chat_id}) == 0:
            raise ChatNotFound()

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
        params: dict[str, Any] = {"project_id": project_id, "limit": limit}
        conditions = ["project_id = %(project_id)s"]
        if before is not None:
            params["at"], params["id"] = before
            conditions.append("(updated_at, id) < (%(at)s, %(id)s)")
        if archived is not None:
            conditions.append(_ARCHIVED[archived])
        if pinned is not None:
            conditions.append(_PINNED[pinned])
        query = f"{_SELECT_CHAT} WHERE {' AND '.join(conditions)} {_RECENT}"
        return [msgspec.convert(r, Chat) for r in await self._all(query, params)]

    async def add_message(self, message: Message) -> None:
        if await self._run(_INSERT_MESSAGE, _message_params(message)) == 1:
            return
        if await self._one("SELECT 1 FROM chats WHERE id = %(id)s", {"id": message.chat_id}):
            raise Conflict(ID_TAKEN)
        raise ChatNotFound()

    async def add_messages(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        params = {
            f"{column}_{i}": value
            for i, message in enumerate(messages)
            for column, value in _message_params(message).items()
        }
        row = await self._one(_insert_messages(len(messages)), params)
        if row is None or not row["chats_exist"]:
            raise ChatNotFound()
        if not row["ids_free"]:
            raise Conflict(ID_TAKEN)

    async def add_with_messages(self, chat: Chat, messages: Sequence[Message]) -> None:
        if any(m.chat_id != chat.id for m in messages):
            raise ValueError("every message must belong to the new chat")
        if not messages:
            await self.add(chat)
            return
        params = msgspec.structs.asdict(chat) | {
            f"{column}_{i}": value
            for i, message in enumerate(messages)
            for column, value in _message_params(message).items()
        }
        await self._run(_insert_chat_with_messages(len(messages)), params)

    async def get_message(self, message_id: UUID) -> Message:
        row = await self._one(f"{_SELECT_MESSAGE} WHERE id = %(id)s", {"id": message_id})
        if row is None:
            raise MessageNotFound()
        return _message(row)

    async def save_progress(
        self, message_id: UUID, content: str, now: datetime, reasoning: str = ""
    ) -> bool:
        params = {"id": message_id, "content": content, "now": now, "reasoning": reasoning}
        return await self._run(_SAVE_PROGRESS, params) == 1

    async def update_message(self, message: Message) -> None:
        if await self._run(_UPDATE_MESSAGE, _message_params(message)) == 0:
            raise MessageNotFound()

    async def delete_message(self, message_id: UUID) -> None:
        if await self._run("DELETE FROM messages WHERE id = %(id)s", {"id": message_id}) == 0:
            raise MessageNotFound()

    async def finish_reply(self, message: Message, usage: UsageRecord) -> None:
        if usage.message_id != message.id:
            raise ValueError("the usage record must be about the reply")
        params = _message_params(message)
        params.update({f"usage_{k}": v for k, v in msgspec.structs.asdict(usage).items()})
        row = await self._one(_FINISH_REPLY, params)
        if row is None or row["updated"] == 0:
            raise MessageNotFound()

    async def list_messages(self, chat_id: UUID) -> list[Message]:
        rows = await self._all(
            f"{_SELECT_MESSAGE} WHERE chat_id = %(chat_id)s AND {_IN_CONVERSATION} "
            "ORDER BY created_at, id",
            {"chat_id": chat_id},
        )
        return [_message(r) for r in rows]

    async def supersede_reply(
        self, reply_id: UUID, *, question_id: UUID, asked: str, now: datetime, keep: int
    ) -> None:
        check_limit(keep)
        params = {"id": reply_id, "question_id": question_id, "asked": asked, "now": now}
        if await self._run(_SUPERSEDE, params) == 0:
            raise MessageNotFound()
        params = {"id": reply_id, "question_id": question_id, "keep": keep}
        await self._run(_DROP_OLD_VERSIONS, params)

    async def list_versions(self, question_id: UUID) -> list[ReplyVersion]:
        query = f"{_SELECT_VERSION} WHERE answers = %(question_id)s ORDER BY created_at, id"
        return [_version(r) for r in await self._all(query, {"question_id": question_id})]

    async def get_version(self, reply_id: UUID) -> ReplyVersion:
        query = f"{_SELECT_VERSION} WHERE id = %(id)s AND answers IS NOT NULL"
        row = await self._one(query, {"id": reply_id})
        if row is None:
            raise MessageNotFound()
        return _version(row)

    async def restore_version(self, reply_id: UUID) -> None:
        if await self._run(_RESTORE, {"id": reply_id}) == 0:
            raise MessageNotFound()

    async def version_counts(self, chat_id: UUID) -> dict[UUID, int]:
        rows = await self._all(_VERSION_COUNTS, {"chat_id": chat_id})
        return {row["answers"]: row["versions"] for row in rows}

    async def unfinished_replies(self, chat_id: UUID) -> list[UUID]:
        return [row["id"] for row in await self._all(_UNFINISHED_OF_CHAT, {"id": chat_id})]

    async def unfinished_replies_in_project(self, project_id: UUID) -> list[UUID]:
        rows = await self._all(_UNFINISHED_IN_PROJECT, {"id": project_id})
        return [row["id"] for row in rows]

    async def unfinished_replies_of_user(self, user_id: UUID) -> list[UUID]:
        rows = await self._all(_UNFINISHED_OF_USER, {"id": user_id})
        return [row["id"] for row in rows]

    async def fail_reply(self, message_id: UUID, now: datetime, error: str) -> bool:
        params = {"id": message_id, "now": now, "error": error}
        return await self._run(_FAIL_REPLY, params) == 1

    async def fail_abandoned_replies(
        self, updated_before: datetime, now: datetime, error: str, *, limit: int
    ) -> list[UUID]:
        check_limit(limit)
        params = {"before": updated_before, "now": now, "error": error, "limit": limit}
        return [row["id"] for row in await self._all(_FAIL_ABANDONED, params)]
