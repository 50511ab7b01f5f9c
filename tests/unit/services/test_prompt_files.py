"""Which attached files go to a model as images (vision in the chat flow), read from the store."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.model.catalog import ModelSpec
from whalli.domain.model.chats import Message, MessageRole, MessageStatus
from whalli.domain.model.images import MAX_IMAGES, ImagePart
from whalli.domain.model.users import Plan
from whalli.domain.services.chat.prompt_files import (
    MAX_PROMPT_IMAGE_BYTES,
    attached_files,
    files_for_prompt,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PROJECT, USER = uuid.uuid4(), uuid.uuid4()


def model(provider: str = "openai", *, vision: bool = True) -> ModelSpec:
    return ModelSpec(
        id=f"{provider}/m", provider=provider, upstream="m", min_plan=Plan.FREE,
        input_usd_per_mtok=0.0, output_usd_per_mtok=0.0, context_window=100_000, vision=vision,
    )  # fmt: skip


class CountingBlobs(InMemoryBlobStorage):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def get(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        self.reads.append(key)
        return await super().get(key, chunk_size=7)  # many chunks


async def stored(
    blobs: InMemoryBlobStorage, name: str, content_type: str, data: bytes, *, size: int = -1
) -> Attachment:
    attachment_id = uuid.uuid4()
    attachment = Attachment(
        id=attachment_id, project_id=PROJECT, user_id=USER,
        object_key=Attachment.key_for(PROJECT, attachment_id), filename=name,
        content_type=content_type, size_bytes=len(data) if size < 0 else size, sha256="0" * 64,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    attachment.start_processing(NOW)
    attachment.complete(ExtractionResult(text=f"OCR of {name}", method="ocr"), NOW)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    await blobs.put(attachment.object_key, chunks(), content_type)
    return attachment


def said(i: int, *files: Attachment) -> Message:
    message = Message.from_user(
        id=uuid.UUID(int=i), chat_id=uuid.UUID(int=0), content=f"message {i}", now=NOW,
        attachment_ids=tuple(f.id for f in files),
    )  # fmt: skip
    assert message.status is MessageStatus.COMPLETE
    assert message.role is MessageRole.USER
    return message


def image_bytes(part: object) -> bytes:
    assert isinstance(part, ImagePart)
    assert part.is_data
    return base64.b64decode(part.data or "")


async def test_a_model_that_reads_images_gets_the_image_itself_and_other_files_as_text() -> None:
    blobs = CountingBlobs()
    photo = await stored(blobs, "photo.png", "image/png", b"\x89PNG fake image bytes")
    report = await stored(blobs, "report.pdf", "application/pdf", b"%PDF")
    new, earlier = await files_for_prompt(model(), blobs, [photo, report], None, {})
    assert new[0][0] == "photo.png"
    assert image_bytes(new[0][1]) == b"\x89PNG fake image bytes"
    assert isinstance(new[0][1], ImagePart)
    assert new[0][1].media_type == "image/png"
    assert new[1] == ("report.pdf", "OCR of report.pdf")
    assert earlier == {}
    assert blobs.reads == [photo.object_key]  # the PDF's bytes are never read


async def test_a_model_that_does_not_read_images_gets_their_text_and_nothing_is_read() -> None:
    blobs = CountingBlobs()
    photo = await stored(blobs, "photo.png", "image/png", b"png")
    for spec in (model(vision=False), model("dev", vision=True)):
        new, _ = await files_for_prompt(spec, blobs, [photo], None, {})
        assert new == [("photo.png", "OCR of photo.png")]
    new, _ = await files_for_prompt(model(), None, [photo], None, {})  # no store: text
    assert new == [("photo.png", "OCR of photo.png")]
    assert blobs.reads == []


async def test_an_image_that_cannot_be_read_as_recorded_goes_as_its_text() -> None:
    blobs = CountingBlobs()
    gone = await stored(blobs, "gone.png", "image/png", b"png")
    await blobs.delete(gone.object_key)
    longer = await stored(blobs, "longer.png", "image/png", b"more bytes than recorded", size=4)
    shorter = await stored(blobs, "shorter.png", "image/png", b"abc", size=10)
    new, _ = await files_for_prompt(model(), blobs, [gone, longer, shorter], None, {})
    assert [body for _, body in new] == [
        f"OCR of {n}" for n in ("gone.png", "longer.png", "shorter.png")
    ]


async def test_an_image_larger_than_the_provider_takes_goes_as_its_text() -> None:
    blobs = CountingBlobs()
    big = await stored(blobs, "big.jpg", "image/jpeg", b"j" * (4 * 1024 * 1024))  # > 5 MiB base64
    to_claude, _ = await files_for_prompt(model("anthropic"), blobs, [big], None, {})
    assert to_claude == [("big.jpg", "OCR of big.jpg")]
    to_openai, _ = await files_for_prompt(model("openai"), blobs, [big], None, {})
    assert image_bytes(to_openai[0][1]) == b"j" * (4 * 1024 * 1024)


async def test_earlier_images_go_newest_first_after_the_new_ones_up_to_the_count() -> None:
    blobs = CountingBlobs()
    olds = [
        await stored(blobs, f"old{i}.webp", "image/webp", b"w%d" % i) for i in range(MAX_IMAGES)
    ]
    history = [said(i, f) for i, f in enumerate(olds)]
    fresh = await stored(blobs, "new.gif", "image/gif", b"gif")
    new, earlier = await files_for_prompt(model(), blobs, [fresh], history, {f.id: f for f in olds})
    assert isinstance(new[0][1], ImagePart)
    as_images = [f.filename for f in olds if isinstance(earlier[f.id][1], ImagePart)]
    # one slot went to the new message's image: the oldest earlier one goes as text
    assert as_images == [f"old{i}.webp" for i in range(1, MAX_IMAGES)]
    assert earlier[olds[0].id] == ("old0.webp", "OCR of old0.webp")


async def test_the_images_of_one_prompt_hold_at_most_the_byte_budget() -> None:
    blobs = CountingBlobs()
    piece = MAX_PROMPT_IMAGE_BYTES // 3 + 1  # three do not fit; two do
    files = [await stored(blobs, f"{i}.png", "image/png", bytes([i]) * piece) for i in range(3)]
    new, _ = await files_for_prompt(model(), blobs, files, None, {})
    assert [isinstance(body, ImagePart) for _, body in new] == [True, True, False]


async def test_an_image_attached_again_and_again_counts_each_time() -> None:
    blobs = CountingBlobs()
    cat = await stored(blobs, "cat.png", "image/png", b"cat")
    fits = [said(i, *[cat] * 5) for i in range(3)]  # 15 earlier places, 5 new: 20
    new, earlier = await files_for_prompt(model(), blobs, [cat] * 5, fits, {cat.id: cat})
    assert all(isinstance(body, ImagePart) for _, body in new)
    assert isinstance(earlier[cat.id][1], ImagePart)

    too_many = [*fits, said(3, cat)]  # 21 places: more images than a prompt holds
    new, earlier = await files_for_prompt(model(), blobs, [cat] * 5, too_many, {cat.id: cat})
    assert new == [("cat.png", "OCR of cat.png")] * 5
    assert earlier == {cat.id: ("cat.png", "OCR of cat.png")}


def png_of(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR declaring ``width`` x ``height`` (the size read from it)."""
    ihdr = (13).to_bytes(4) + b"IHDR" + width.to_bytes(4) + height.to_bytes(4) + bytes(9)
    return b"\x89PNG\r\n\x1a\n" + ihdr + bytes(64)


async def test_xai_gets_only_png_and_jpeg_as_images_and_other_types_as_their_text() -> None:
    blobs = CountingBlobs()
    files = [
        await stored(blobs, "a.png", "image/png", b"png"),
        await stored(blobs, "b.jpg", "image/jpeg", b"jpeg"),
        await stored(blobs, "c.gif", "image/gif", b"gif"),
        await stored(blobs, "d.webp", "image/webp", b"webp"),
    ]
    to_grok, _ = await files_for_prompt(model("xai"), blobs, files, None, {})
    assert [isinstance(body, ImagePart) for _, body in to_grok] == [True, True, False, False]
    assert to_grok[2:] == [("c.gif", "OCR of c.gif"), ("d.webp", "OCR of d.webp")]
    assert blobs.reads == [files[0].object_key, files[1].object_key]  # the others never read
    to_openai, _ = await files_for_prompt(model("openai"), blobs, files, None, {})
    assert all(isinstance(body, ImagePart) for _, body in to_openai)


async def test_an_image_past_claudes_8000_pixels_a_side_goes_as_its_text() -> None:
    blobs = CountingBlobs()
    files = [
        await stored(blobs, "edge.png", "image/png", png_of(8000, 8000)),
        await stored(blobs, "wide.png", "image/png", png_of(8001, 10)),
        await stored(blobs, "tall.png", "image/png", png_of(10, 9000)),
        await stored(blobs, "unknown.png", "image/png", b"no header to read"),
    ]
    to_claude, _ = await files_for_prompt(model("anthropic"), blobs, files, None, {})
    assert [isinstance(body, ImagePart) for _, body in to_claude] == [True, False, False, True]
    assert to_claude[1:3] == [("wide.png", "OCR of wide.png"), ("tall.png", "OCR of tall.png")]
    to_openai, _ = await files_for_prompt(model("openai"), blobs, files, None, {})
    assert all(isinstance(body, ImagePart) for _, body in to_openai)


async def test_another_model_gets_the_files_as_its_provider_takes_them_with_no_read() -> None:
    """What a reply's fallback is given (``AttachedFiles.for_model``): the images read for the
    model asked, each one its own provider refuses (its type, its pixels, its bytes) as its
    text, as ``files_for_prompt`` gives them to it asked directly."""
    blobs = CountingBlobs()
    files = [
        await stored(blobs, "a.png", "image/png", png_of(100, 100)),
        await stored(blobs, "c.gif", "image/gif", b"gif"),
        await stored(blobs, "huge.png", "image/png", png_of(9000, 9000)),
        await stored(blobs, "big.jpg", "image/jpeg", b"j" * (4 * 1024 * 1024)),
    ]
    to_openai, _, attached = await attached_files(model("openai"), blobs, files, None, {})
    assert all(isinstance(body, ImagePart) for _, body in to_openai)
    reads = list(blobs.reads)

    given = {p: attached.for_model(model(p)) for p in ("xai", "anthropic", "openai")}
    blind = attached.for_model(model("openai", vision=False))

    assert blobs.reads == reads  # nothing read again
    assert [isinstance(body, ImagePart) for _, body in given["xai"][0]] == [True, False, True, True]
    assert [isinstance(body, ImagePart) for _, body in given["anthropic"][0]] == [
        True, True, False, False,
    ]  # fmt: skip
    assert given["anthropic"][0][2:] == [
        ("huge.png", "OCR of huge.png"), ("big.jpg", "OCR of big.jpg"),
    ]  # fmt: skip
    assert given["openai"] == (to_openai, {})
    assert blind == ([(f.filename, f"OCR of {f.filename}") for f in files], {})
    for provider, files_given in given.items():  # as each is given them asked directly
        assert files_given == await files_for_prompt(model(provider), blobs, files, None, {})


async def test_another_model_gets_an_image_not_read_for_the_model_asked_as_its_text() -> None:
    blobs = CountingBlobs()
    photo = await stored(blobs, "photo.png", "image/png", b"png")
    _, _, attached = await attached_files(model("openai", vision=False), blobs, [photo], None, {})

    assert attached.for_model(model("openai")) == ([("photo.png", "OCR of photo.png")], {})
    assert blobs.reads == []
