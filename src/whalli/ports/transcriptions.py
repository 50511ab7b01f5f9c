"""Storage of transcriptions."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from whalli.domain.model.transcriptions import Transcription


class TranscriptionRepository(Protocol):
    async def add(self, transcription: Transcription) -> None: ...

    async def get_for_attachment(self, attachment_id: UUID) -> Transcription | None:
        """The transcription of an uploaded audio attachment (the newest, if several), or None."""
        ...

    async def get(self, transcription_id: UUID) -> Transcription:
        """Raises ``TranscriptionNotFound``."""
        ...

    async def update(self, transcription: Transcription) -> None:
        """Raises ``TranscriptionNotFound``."""
        ...
