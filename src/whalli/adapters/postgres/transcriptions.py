"""Transcriptions in Postgres."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import (
    PostgresRepository,
    assignments,
    columns,
    placeholders,
)
from whalli.domain.model.errors import TranscriptionNotFound
from whalli.domain.model.transcriptions import Transcription
from whalli.ports.transcriptions import TranscriptionRepository

_COLUMNS = (
    "id",
    "attachment_id",
    "user_id",
    "chat_id",
    "status",
    "language",
    "text",
    "message_id",
    "failure_reason",
    "created_at",
    "updated_at",
)
_SELECT = f"SELECT {columns(_COLUMNS)} FROM transcriptions"
_INSERT = f"INSERT INTO transcriptions ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)})"
_UPDATE = f"UPDATE transcriptions SET {assignments(_COLUMNS[1:])} WHERE id = %(id)s"


class PostgresTranscriptionRepository(PostgresRepository, TranscriptionRepository):
    async def add(self, transcription: Transcription) -> None:
        await self._run(_INSERT, msgspec.structs.asdict(transcription))

    async def get(self, transcription_id: UUID) -> Transcription:
        row = await self._one(f"{_SELECT} WHERE id = %(id)s", {"id": transcription_id})
        if row is None:
            raise TranscriptionNotFound()
        return msgspec.convert(row, Transcription)

    async def get_for_attachment(self, attachment_id: UUID) -> Transcription | None:
        row = await self._one(
            f"{_SELECT} WHERE attachment_id = %(attachment_id)s "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            {"attachment_id": attachment_id},
        )
        return None if row is None else msgspec.convert(row, Transcription)

    async def update(self, transcription: Transcription) -> None:
        if await self._run(_UPDATE, msgspec.structs.asdict(transcription)) == 0:
            raise TranscriptionNotFound()
