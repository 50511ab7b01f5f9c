"""How attached files go to a model: as their text, or, to a model that reads images, as images.

Rules (the chat flow; ``/v1`` clients send their images themselves):
- a model that reads images (``ModelSpec.sees_images``) is sent an attached PNG, JPEG, GIF or
  WebP as the image itself (a ``data:`` URL of its bytes, read from blob storage), labelled
  ``Attached image: <name>``, instead of the text OCR found in it; any other model, and every
  other file, gets the text (``context.attachment_block``): as much of it as was read
  (``AttachmentRepository.get_many_excerpts``), with what its label says of the rest;
- a prompt holds at most ``MAX_IMAGES`` images and ``MAX_PROMPT_IMAGE_BYTES`` of them in all
  (a file attached more than once counts each time): the new message's first, then the
  earlier messages', newest first. A file past either limit, of a type the model's provider
  does not take (``images.image_media_types``: xAI takes PNG and JPEG only), larger than it
  takes (``images.max_image_bytes``) or larger in pixels (``images.max_image_side``, read from
  the image's header once read: Claude's 8000 a side), or whose bytes cannot be
  read now (deleted from the store, the store down) goes as its text: the reply never fails
  for it (one without its text, OCR failed or not done, then cannot go: ``textless_images``);
- the images are read at once, side by side, and only when some are wanted: a prompt without
  images costs no read. A start or a regeneration reads them outside its transaction (see
  ``ImagesToRead``): no database connection or chat lock is held while the store answers;
- a reply's fallback model gets the files as its own provider takes them, by the same rules,
  from the images read for the model asked (``AttachedFiles.for_model``): one its provider
  refuses goes as its text, and nothing is read again (one not read then goes as its text).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from whalli.domain.model.attachments import Attachment, ExtractionExcerpt
from whalli.domain.model.catalog import ModelSpec
from whalli.domain.model.chats import Message, MessageRole
from whalli.domain.model.errors import WhalliError
from whalli.domain.model.images import (
    MAX_IMAGES,
    ImagePart,
    data_image,
    provider_refusal,
)
from whalli.domain.services.chat.context import FileBody
from whalli.domain.services.chat.textless_images import image_refusal, textless_checked
from whalli.ports.blob_storage import BlobStorage

# The bytes of all the images of one prompt (what one reply holds in memory for them, base64).
MAX_PROMPT_IMAGE_BYTES = 20 * 1024 * 1024

PromptFile = tuple[str, FileBody]  # (file name, body)
ReadImages = Mapping[UUID, ImagePart | None]  # by attachment id; None: could not be read


class ImagesToRead(Exception):
    """The prompt wants these files as images, and they were not read beforehand: the caller
    leaves its transaction (nothing was written yet), reads them (``read_images``) and builds
    the prompt again with them. Never reaches a client."""

    def __init__(self, attachments: list[Attachment]) -> None:
        super().__init__(f"{len(attachments)} image(s) to read first")
        self.attachments = attachments


async def read_images(blobs: BlobStorage, attachments: Sequence[Attachment]) -> ReadImages:
    """Each file's image (``None`` when it cannot be read now), side by side."""
    read = await asyncio.gather(*(_read_image(blobs, a) for a in attachments))
    return {a.id: image for a, image in zip(attachments, read, strict=True)}


@dataclass(frozen=True)
class AttachedFiles:
    """What a prompt's files were chosen from: the new message's files, the earlier messages'
    (by id) with the ``history`` that orders them, and the images read of them."""

    new: Sequence[Attachment]
    history: Sequence[Message] | None
    earlier: Mapping[UUID, Attachment]
    images: ReadImages

    def for_model(self, spec: ModelSpec) -> tuple[list[PromptFile], dict[UUID, PromptFile]]:
        """The files as ``files_for_prompt`` gives them to ``spec``, from the images read
        here (no read: an image ``spec`` would take that was not read goes as its text)."""
        chosen = _images_wanted(spec, self.new, self.history, self.earlier)
        return _files(spec, chosen, self.images, self.new, self.earlier)


async def files_for_prompt(
    spec: ModelSpec,
    blobs: BlobStorage | None,
    new: Sequence[Attachment],
    history: Sequence[Message] | None,
    earlier: Mapping[UUID, Attachment],
    already: ReadImages | None = None,
    *,
    read_here: bool = True,
) -> tuple[list[PromptFile], dict[UUID, PromptFile]]:
    """The new message's files in order, and the earlier messages' by id (see the rules).
    The images wanted are taken from ``already`` when they are there, read otherwise; with
    ``read_here`` False, ``ImagesToRead`` is raised instead of reading any.

    ``blobs`` ``None``: no image is ever sent (a handler built without blob storage)."""
    files, earlier_files, _ = await attached_files(
        spec, blobs, new, history, earlier, already, read_here=read_here
    )
    return files, earlier_files


async def attached_files(
    spec: ModelSpec,
    blobs: BlobStorage | None,
    new: Sequence[Attachment],
    history: Sequence[Message] | None,
    earlier: Mapping[UUID, Attachment],
    already: ReadImages | None = None,
    *,
    read_here: bool = True,
    strict: bool = True,
) -> tuple[list[PromptFile], dict[UUID, PromptFile], AttachedFiles]:
    """``files_for_prompt``, and what its files were chosen from (for a reply's fallbacks).
    A file without its text goes only as a sound image (``textless_images``: else
    ``AttachmentNotReady``, or left out: an earlier message's, a new one's without
    ``strict``)."""
    chosen = _images_wanted(spec, new, history, earlier) if blobs is not None else []
    found = dict(already or {})
    missing = [a for a in chosen if a.id not in found]
    if missing:
        if not read_here:
            raise ImagesToRead(missing)
        assert blobs is not None
        found.update(await read_images(blobs, missing))
    files, earlier_files = _files(spec, chosen, found, new, earlier)
    new, files, earlier, earlier_files = textless_checked(
        new, files, earlier, earlier_files, strict=strict
    )
    return files, earlier_files, AttachedFiles(new, history, earlier, found)


def _files(
    spec: ModelSpec,
    chosen: Sequence[Attachment],
    found: ReadImages,
    new: Sequence[Attachment],
    earlier: Mapping[UUID, Attachment],
) -> tuple[list[PromptFile], dict[UUID, PromptFile]]:
    """Each file as its image when it was ``chosen``, read, and ``spec``'s provider takes the
    image read (its pixels); else as its text."""
    images = {
        a.id: image
        for a in chosen
        if (image := found.get(a.id)) is not None and provider_refusal(image, spec.provider) is None
    }
    return (
        [_body(a, images) for a in new],
        {file_id: _body(a, images) for file_id, a in earlier.items()},
    )


def _body(attachment: Attachment, images: Mapping[UUID, ImagePart]) -> PromptFile:
    """The file as its image, or its text: the text itself when it is whole, else its
    extraction, whose label then says how it was cut (``context.attachment_block``)."""
    image = images.get(attachment.id)
    if image is not None:
        return attachment.filename, image
    extraction = attachment.extraction
    if extraction is None:
        return attachment.filename, ""
    if extraction.truncated or (isinstance(extraction, ExtractionExcerpt) and extraction.cut):
        return attachment.filename, extraction
    return attachment.filename, extraction.text


def _images_wanted(
    spec: ModelSpec,
    new: Sequence[Attachment],
    history: Sequence[Message] | None,
    earlier: Mapping[UUID, Attachment],
) -> list[Attachment]:
    """The files to send as images. A file attached more than once goes as an image every
    time (``_body``), so it is counted every time: each of its places in the prompt takes one
    of the ``MAX_IMAGES`` and its bytes from the budget."""
    if not spec.sees_images:
        return []
    ordered = list(new)
    for message in reversed(history or ()):
        if message.role is MessageRole.USER:
            ordered += [earlier[i] for i in message.attachment_ids if i in earlier]
    places = Counter(a.id for a in ordered)
    images, budget = MAX_IMAGES, MAX_PROMPT_IMAGE_BYTES
    chosen: dict[UUID, Attachment] = {}
    for attachment in ordered:
        count, size = places[attachment.id], attachment.size_bytes
        if (
            attachment.id in chosen
            or image_refusal(spec, attachment) is not None  # its type, its size
            or count > images
            or count * size > budget
        ):
            continue
        images, budget = images - count, budget - count * size
        chosen[attachment.id] = attachment
    return list(chosen.values())


async def _read_image(blobs: BlobStorage, attachment: Attachment) -> ImagePart | None:
    """The file as an image, or ``None`` when its bytes cannot be read now or are not the size
    recorded (the store's copy then is not the file that was checked)."""
    chunks: list[bytes] = []
    size = 0
    try:
        stream = await blobs.get(attachment.object_key)
        try:
            async for chunk in stream:
                size += len(chunk)
                if size > attachment.size_bytes:
                    return None
                chunks.append(chunk)
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:  # the store's response now, not when collected
                await close()
    except WhalliError:  # BlobNotFound, ServiceUnavailable: the text goes instead
        return None
    if size != attachment.size_bytes:
        return None
    return data_image(attachment.content_type, b"".join(chunks))
