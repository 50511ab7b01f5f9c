"""Attached images without their text: a model that reads images does not need it.

Rules (a chat's start, follow-up or regeneration):
- a file whose text is not extracted (``pending``/``processing``, or ``failed``) is refused
  (``AttachmentNotReady``, naming the file and its state), unless the model reads images and
  would take it as one (``image_refusal``: its type and size): the image itself is then sent
  (``prompt_files``) and its text, absent, is not waited for;
- a failed one only when OCR is what failed (``OCR_ONLY_FAILURES``: too many pixels for OCR,
  Tesseract refused it, out of time or memory); one found damaged, not of its type, or that
  crashed its extractor is no more use as an image;
- such a file must then go as an image, and one whose header gives its size in pixels (the
  provider's limits are judged on it, ``provider_refusal``): one that does not (its bytes
  unreadable now, past the prompt's image limits, refused by the provider, not an image) is
  ``AttachmentNotReady`` saying why (a pending one is waited for as any file is), or, for an
  earlier message's file or a regenerated question's (``strict`` False), left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

from whalli.domain.model.attachments import OCR_ONLY_FAILURES, Attachment, AttachmentStatus
from whalli.domain.model.catalog import ModelSpec
from whalli.domain.model.errors import AttachmentNotReady
from whalli.domain.model.image_size import data_url_size
from whalli.domain.model.images import ImagePart, image_media_types, max_image_bytes
from whalli.domain.services.chat.context import FileBody

PromptFile = tuple[str, FileBody]  # (file name, body), as ``prompt_files`` gives it


def image_refusal(spec: ModelSpec, attachment: Attachment) -> str | None:
    """Why ``spec`` does not take the file as an image, by its type and size (``None``: it
    does; the prompt's limits and the image's pixels are judged once its bytes are read)."""
    if not spec.sees_images:
        return f"{spec.id} does not read images"
    media_types = image_media_types(spec.provider)
    if attachment.content_type not in media_types:
        allowed = ", ".join(sorted(media_types))
        return f"it is {attachment.content_type}; {spec.id} reads images of {allowed}"
    limit = max_image_bytes(spec.provider)
    if not 0 < attachment.size_bytes <= limit:
        return f"it is {attachment.size_bytes} bytes; {spec.id} reads images of at most {limit}"
    return None


def textless_refusal(spec: ModelSpec | None, attachment: Attachment) -> str | None:
    """Why the file, its text not extracted, cannot go to ``spec`` as an image (``None``: it
    may; ``spec`` ``None``: no image is sent at all)."""
    if spec is None:
        return "no image is sent"
    status, reason = attachment.status, attachment.failure_reason or ""
    if status is AttachmentStatus.FAILED and not reason.startswith(OCR_ONLY_FAILURES):
        return "it is not an image a model can read"
    return image_refusal(spec, attachment)


def not_ready(attachment: Attachment, why: str | None = None) -> AttachmentNotReady:
    """The error for a file whose text is not extracted; ``why``: why it cannot go as an
    image (said of an image only)."""
    reason = attachment.failure_reason or "its text is still being extracted"
    if why is not None and attachment.content_type.startswith("image/"):
        reason = f"{reason}; and it cannot be sent as an image: {why}"
    return AttachmentNotReady(
        f"The file {attachment.filename!r} is not ready: {reason}.",
        attachment_id=str(attachment.id),
        filename=attachment.filename,
        attachment_status=str(attachment.status),
    )


def textless_checked(
    new: Sequence[Attachment],
    files: list[PromptFile],
    earlier: Mapping[UUID, Attachment],
    earlier_files: dict[UUID, PromptFile],
    *,
    strict: bool,
) -> tuple[list[Attachment], list[PromptFile], dict[UUID, Attachment], dict[UUID, PromptFile]]:
    """The files as ``prompt_files`` chose them, each without its text gone as a sound image
    (see the rules): the new message's (``new``, ``files``: one that is not raises
    ``AttachmentNotReady``, or is left out without ``strict``) and the earlier messages'
    (left out)."""
    kept_new, kept_files = [], []
    for attachment, file in zip(new, files, strict=True):
        why = _not_sent(attachment, file)
        if why is None:
            kept_new.append(attachment)
            kept_files.append(file)
        elif strict:
            raise not_ready(attachment, why)
    kept = {i: a for i, a in earlier.items() if _not_sent(a, earlier_files[i]) is None}
    return kept_new, kept_files, kept, {i: earlier_files[i] for i in kept}


def _not_sent(attachment: Attachment, file: PromptFile) -> str | None:
    """Why a file without its text is of no use as sent (``None``: it is, or has its text)."""
    if attachment.status is AttachmentStatus.DONE:
        return None
    body = file[1]
    if not isinstance(body, ImagePart):
        return (
            "it did not fit the prompt's images, is too large in pixels for the model's "
            "provider, or its bytes cannot be read now"
        )
    if data_url_size(body.data or "") is None:
        return "its bytes are not an image of its type"
    return None
