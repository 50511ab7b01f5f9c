"""Uploaded files and their text extraction lifecycle."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import msgspec

from whalli.domain.model.base import Entity, Value
from whalli.domain.model.errors import InvalidStateTransition


class AttachmentStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


# Why OCR failed on an image that is sound as far as is known (the extraction readers' words,
# each the start of the reason): too many pixels for OCR, Tesseract refused it or is missing,
# out of time or memory. A model that reads images is sent such an image all the same
# (``chat.textless_images``); any other failure (the image damaged, not of its type, the
# extractor crashed on it) says the file is of no use to that model either.
OCR_IMAGE_TOO_LARGE = "the image is too large to be read"
OCR_FAILED = "the OCR failed"
OCR_NOT_INSTALLED = "the OCR engine (tesseract) is not installed"
EXTRACTION_TOO_LONG = "the extraction took longer than"
EXTRACTION_TOO_MUCH_MEMORY = "the extraction needed more than"
OCR_ONLY_FAILURES = (
    OCR_IMAGE_TOO_LARGE,
    OCR_FAILED,
    OCR_NOT_INSTALLED,
    EXTRACTION_TOO_LONG,
    EXTRACTION_TOO_MUCH_MEMORY,
)

_ALLOWED = {
    AttachmentStatus.PENDING: {AttachmentStatus.PROCESSING, AttachmentStatus.FAILED},
    # processing -> processing: a redelivered job after a crash takes the work over again
    AttachmentStatus.PROCESSING: {
        AttachmentStatus.PROCESSING,
        AttachmentStatus.DONE,
        AttachmentStatus.FAILED,
    },
    AttachmentStatus.DONE: set(),
    AttachmentStatus.FAILED: set(),
}


class PageExtraction(Value, frozen=True, kw_only=True):
    page: int
    method: str  # "text" | "ocr"
    chars: int


class ExtractionResult(Value, frozen=True, kw_only=True):
    text: str
    method: str
    page_count: int | None = None
    pages: tuple[PageExtraction, ...] = ()
    truncated: bool = False


class ExtractionExcerpt(ExtractionResult, frozen=True, kw_only=True):
    """An extraction as a prompt reads it (``AttachmentRepository.get_many_excerpts``): its
    ``text`` only the first characters of the stored text, as many as asked, cut by the store so
    that the rest is never read; ``length`` the stored text's, and ``blank`` whether the stored
    text is only whitespace (``str.isspace``). Never stored: the adapters refuse to write it."""

    length: int
    blank: bool

    @classmethod
    def of(cls, result: ExtractionResult, max_chars: int) -> ExtractionExcerpt:
        """The first ``max_chars`` characters of ``result``'s text, and what it says of it."""
        fields = msgspec.structs.asdict(result)
        if isinstance(result, ExtractionExcerpt):
            length, blank = result.length, result.blank
        else:
            length, blank = len(result.text), not result.text.strip()
        fields.update(text=result.text[: max(max_chars, 0)], length=length, blank=blank)
        return cls(**fields)

    @property
    def cut(self) -> bool:
        """Whether ``text`` is not the whole stored text."""
        return self.length > len(self.text)


class Attachment(Entity, kw_only=True):
    id: UUID
    project_id: UUID
    user_id: UUID
    object_key: str
    filename: str
    content_type: str
    # The charset that reads every byte of a text file (``text_charsets``): "utf-8" or
    # "utf-16"; None for other files, and for text that is neither throughout.
    charset: str | None = None
    size_bytes: int
    sha256: str
    status: AttachmentStatus = AttachmentStatus.PENDING
    extraction: ExtractionResult | None = None
    failure_reason: str | None = None
    created_at: datetime
    updated_at: datetime
    # When the sweeper last queued the extraction again (``None``: only the upload queued it).
    requeued_at: datetime | None = None

    @staticmethod
    def key_for(project_id: UUID, attachment_id: UUID) -> str:
        """Object keys are generated, never derived from the client's file name."""
        return f"{project_id}/{attachment_id}"

    def _move(self, to: AttachmentStatus, now: datetime) -> None:
        if to not in _ALLOWED[self.status]:
            raise InvalidStateTransition(f"An attachment cannot go from {self.status} to {to}.")
        self.status = to
        self.updated_at = now

    def start_processing(self, now: datetime) -> None:
        self._move(AttachmentStatus.PROCESSING, now)

    def complete(self, result: ExtractionResult, now: datetime) -> None:
        self._move(AttachmentStatus.DONE, now)
        self.extraction = result
        self.failure_reason = None

    def fail(self, reason: str, now: datetime) -> None:
        self._move(AttachmentStatus.FAILED, now)
        self.failure_reason = reason[:500]

    def check_storable(self) -> None:
        """Refuse (``ValueError``) to store an attachment read with an excerpt of its text
        (``ExtractionExcerpt``): storing it would cut its text for good."""
        if isinstance(self.extraction, ExtractionExcerpt):
            raise ValueError(f"attachment {self.id} was read with an excerpt of its text")

    @property
    def is_final(self) -> bool:
        return self.status in (AttachmentStatus.DONE, AttachmentStatus.FAILED)
