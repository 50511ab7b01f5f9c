"""Shared links to chats, in memory."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.errors import ShareNotFound
from whalli.domain.model.shares import ChatShare
from whalli.ports.shares import ChatShareRepository

_TABLE = "chat_shares"


class InMemoryChatShareRepository(MemoryRepository, ChatShareRepository):
    async def add(self, share: ChatShare) -> None:
        self._tx().insert(_TABLE, share.id, share)

    async def find(self, share_id: UUID) -> ChatShare | None:
        found: ChatShare | None = self._tx().find(_TABLE, share_id)
        return found

    async def find_by_hash(self, token_hash: str) -> ChatShare | None:
        rows: list[ChatShare] = self._tx().select(_TABLE, lambda s: s.token_hash == token_hash)
        return rows[0] if rows else None

    async def list_live(self, chat_id: UUID, now: datetime) -> list[ChatShare]:
        rows: list[ChatShare] = self._tx().select(
            _TABLE, lambda s: s.chat_id == chat_id and s.opens_at(now)
        )
        return sorted(rows, key=lambda s: (s.created_at, s.id), reverse=True)

    async def count_live(self, chat_id: UUID, now: datetime) -> int:
        return len(await self.list_live(chat_id, now))

    async def revoke(self, share_id: UUID, now: datetime) -> bool:
        tx = self._tx()
        share: ChatShare | None = tx.find(_TABLE, share_id)
        if share is None or share.revoked_at is not None:
            return False
        tx.replace(_TABLE, share_id, msgspec.structs.replace(share, revoked_at=now), ShareNotFound)
        return True

    async def revoke_all_in_project(self, project_id: UUID, now: datetime) -> int:
        tx = self._tx()
        chats = {c.id for c in tx.select("chats", lambda c: c.project_id == project_id)}
        live: list[ChatShare] = tx.select(
            _TABLE, lambda s: s.chat_id in chats and s.revoked_at is None
        )
        return self._revoked(live, now)

    async def revoke_all_by_creator(self, user_id: UUID, now: datetime) -> int:
        live: list[ChatShare] = self._tx().select(
            _TABLE, lambda s: s.created_by == user_id and s.revoked_at is None
        )
        return self._revoked(live, now)

    async def revoke_all_by_creator_in_project(
        self, project_id: UUID, user_id: UUID, now: datetime
    ) -> int:
        tx = self._tx()
        chats = {c.id for c in tx.select("chats", lambda c: c.project_id == project_id)}
        live: list[ChatShare] = tx.select(
            _TABLE,
            lambda s: s.chat_id in chats and s.created_by == user_id and s.revoked_at is None,
        )
        return self._revoked(live, now)

    def _revoked(self, live: list[ChatShare], now: datetime) -> int:
        tx = self._tx()
        for share in live:
            tx.replace(
                _TABLE, share.id, msgspec.structs.replace(share, revoked_at=now), ShareNotFound
            )
        return len(live)
