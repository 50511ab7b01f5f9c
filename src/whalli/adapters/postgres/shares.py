"""Shared links to chats in Postgres."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import PostgresRepository, Row, columns, placeholders
from whalli.domain.model.shares import ChatShare
from whalli.ports.shares import ChatShareRepository

_COLUMNS = tuple(ChatShare.__struct_fields__)
_SELECT = f"SELECT {columns(_COLUMNS)} FROM chat_shares"
# the snapshot is a jsonb array of the shown messages
_INSERT = (
    f"INSERT INTO chat_shares ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)})"
).replace("%(messages)s", "%(messages)s::jsonb")
_LIVE = (
    "chat_id = %(chat_id)s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > %(now)s)"
)

_REVOKE_IN_PROJECT = (
    "UPDATE chat_shares SET revoked_at = %(now)s WHERE revoked_at IS NULL "
    "AND chat_id IN (SELECT id FROM chats WHERE project_id = %(project_id)s)"
)
_REVOKE_BY_CREATOR = (
    "UPDATE chat_shares SET revoked_at = %(now)s WHERE revoked_at IS NULL "
    "AND created_by = %(user_id)s"
)
_REVOKE_BY_CREATOR_IN_PROJECT = f"{_REVOKE_IN_PROJECT} AND created_by = %(user_id)s"


def _share(row: Row | None) -> ChatShare | None:
    return None if row is None else msgspec.convert(row, ChatShare)


class PostgresChatShareRepository(PostgresRepository, ChatShareRepository):
    async def add(self, share: ChatShare) -> None:
        params = msgspec.structs.asdict(share)
        params["messages"] = msgspec.json.encode(share.messages).decode()
        await self._run(_INSERT, params)

    async def find(self, share_id: UUID) -> ChatShare | None:
        return _share(await self._one(f"{_SELECT} WHERE id = %(id)s", {"id": share_id}))

    async def find_by_hash(self, token_hash: str) -> ChatShare | None:
        query = f"{_SELECT} WHERE token_hash = %(h)s"
        return _share(await self._one(query, {"h": token_hash}))

    async def list_live(self, chat_id: UUID, now: datetime) -> list[ChatShare]:
        query = f"{_SELECT} WHERE {_LIVE} ORDER BY created_at DESC, id DESC"
        rows = await self._all(query, {"chat_id": chat_id, "now": now})
        return [msgspec.convert(r, ChatShare) for r in rows]

    async def count_live(self, chat_id: UUID, now: datetime) -> int:
        row = await self._one(f"SELECT count(*) AS n FROM chat_shares WHERE {_LIVE}",
                              {"chat_id": chat_id, "now": now})  # fmt: skip
        return 0 if row is None else int(row["n"])

    async def revoke(self, share_id: UUID, now: datetime) -> bool:
        query = (
            "UPDATE chat_shares SET revoked_at = %(now)s WHERE id = %(id)s AND revoked_at IS NULL"
        )
        return await self._run(query, {"id": share_id, "now": now}) > 0

    async def revoke_all_in_project(self, project_id: UUID, now: datetime) -> int:
        return await self._run(_REVOKE_IN_PROJECT, {"project_id": project_id, "now": now})

    async def revoke_all_by_creator(self, user_id: UUID, now: datetime) -> int:
        return await self._run(_REVOKE_BY_CREATOR, {"user_id": user_id, "now": now})

    async def revoke_all_by_creator_in_project(
        self, project_id: UUID, user_id: UUID, now: datetime
    ) -> int:
        params = {"project_id": project_id, "user_id": user_id, "now": now}
        return await self._run(_REVOKE_BY_CREATOR_IN_PROJECT, params)
