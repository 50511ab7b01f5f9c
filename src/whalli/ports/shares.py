"""Public read-only links to chats (their tokens stored as hashes only)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from uuid import UUID

from whalli.domain.model.shares import ChatShare


class ChatShareRepository(Protocol):
    async def add(self, share: ChatShare) -> None:
        """Raises ``ChatNotFound`` when the chat does not exist, ``UserNotFound`` when its
        creator does not, and ``Conflict`` when the id or the token hash is taken."""
        ...

    async def find(self, share_id: UUID) -> ChatShare | None:
        """The share, live or revoked."""
        ...

    async def find_by_hash(self, token_hash: str) -> ChatShare | None:
        """The share whose token has this SHA-256, live or revoked."""
        ...

    async def list_live(self, chat_id: UUID, now: datetime) -> list[ChatShare]:
        """The chat's shares neither revoked nor expired at ``now``, newest first (by
        ``created_at``, then id)."""
        ...

    async def count_live(self, chat_id: UUID, now: datetime) -> int:
        """How many of the chat's shares are neither revoked nor expired at ``now``."""
        ...

    async def revoke(self, share_id: UUID, now: datetime) -> bool:
        """Mark the share revoked at ``now``; False (nothing changes) when it does not exist
        or is already revoked. One statement. Deleting the chat deletes its shares."""
        ...

    async def revoke_all_in_project(self, project_id: UUID, now: datetime) -> int:
        """Mark revoked at ``now`` every share of the project's chats not revoked yet (an
        expired one included); how many. One statement."""
        ...

    async def revoke_all_by_creator(self, user_id: UUID, now: datetime) -> int:
        """Mark revoked at ``now`` every share ``user_id`` created, in any chat, not revoked yet
        (an expired one included); how many. One statement."""
        ...

    async def revoke_all_by_creator_in_project(
        self, project_id: UUID, user_id: UUID, now: datetime
    ) -> int:
        """Mark revoked at ``now`` every share ``user_id`` created of the project's chats, not
        revoked yet (an expired one included); how many. One statement. (A member leaving or
        removed from the project: their links there die with their access.)"""
        ...
