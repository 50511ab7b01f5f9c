"""Writing a new chat with many messages (imports, forks) in batches a statement can take."""

from __future__ import annotations

from collections.abc import Sequence

from whalli.domain.model.chats import Chat, Message
from whalli.ports.unit_of_work import UnitOfWork

# Messages per statement: Postgres takes at most 65535 parameters (23 a message).
BATCH = 1000


async def add_chat_with_messages(uow: UnitOfWork, chat: Chat, messages: Sequence[Message]) -> None:
    """Add ``chat`` and its ``messages`` (inside the caller's unit of work, which commits)."""
    await uow.chats.add_with_messages(chat, messages[:BATCH])
    for start in range(BATCH, len(messages), BATCH):
        await uow.chats.add_messages(messages[start : start + BATCH])
