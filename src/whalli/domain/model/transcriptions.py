"""Voice transcription of an uploaded audio attachment into a chat message."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from whalli.domain.model.base import Entity
from whalli.domain.model.errors import InvalidStateTransition


class TranscriptionStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class Transcription(Entity, kw_only=True):
    id: UUID
    attachment_id: UUID
    user_id: UUID
    chat_id: UUID | None = None
    status: TranscriptionStatus = TranscriptionStatus.PENDING
    language: str | None = None
    text: str | None = None
    message_id: UUID | None = None
    failure_reason: str | None = None
    created_at: datetime
    updated_at: datetime

    def start(self, now: datetime) -> None:
        if self.status in (TranscriptionStatus.DONE, TranscriptionStatus.FAILED):
            raise InvalidStateTransition(f"A transcription that is {self.status} cannot restart.")
        self.status = TranscriptionStatus.PROCESSING
        self.updated_at = now

    def complete(self, text: str, message_id: UUID | None, now: datetime) -> None:
        if self.status is not TranscriptionStatus.PROCESSING:
            raise InvalidStateTransition("Only a running transcription can complete.")
        self.status, self.text, self.message_id = TranscriptionStatus.DONE, text, message_id
        self.updated_at = now

    def fail(self, reason: str, now: datetime) -> None:
        if self.status in (TranscriptionStatus.DONE, TranscriptionStatus.FAILED):
            raise InvalidStateTransition(f"A transcription that is {self.status} cannot fail.")
        self.status, self.failure_reason = TranscriptionStatus.FAILED, reason[:500]
        self.updated_at = now
