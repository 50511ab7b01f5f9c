"""Transcriptions, in memory."""

from __future__ import annotations

from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.errors import TranscriptionNotFound
from whalli.domain.model.transcriptions import Transcription
from whalli.ports.transcriptions import TranscriptionRepository


class InMemoryTranscriptionRepository(MemoryRepository, TranscriptionRepository):
    async def add(self, transcription: Transcription) -> None:
        self._tx().insert("transcriptions", transcription.id, transcription)

    async def get(self, transcription_id: UUID) -> Transcription:
        found: Transcription = self._tx().get(
            "transcriptions", transcription_id, TranscriptionNotFound
        )
        return found

    async def get_for_attachment(self, attachment_id: UUID) -> Transcription | None:
        found: list[Transcription] = self._tx().select(
            "transcriptions", lambda t: t.attachment_id == attachment_id
        )
        return max(found, key=lambda t: (t.created_at, t.id), default=None)

    async def update(self, transcription: Transcription) -> None:
        self._tx().replace("transcriptions", transcription.id, transcription, TranscriptionNotFound)
