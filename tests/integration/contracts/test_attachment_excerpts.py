"""Contract of ``AttachmentRepository.get_many_excerpts`` (what a prompt reads of its files), in
memory and on Postgres: only the first characters of each text, the whole text's length and
whether it is blank, everything else as ``get_many`` reads it."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from whalli.adapters.postgres.attachments import _WHITESPACE
from whalli.domain.model.attachments import (
    Attachment,
    ExtractionExcerpt,
    ExtractionResult,
    PageExtraction,
)

from ..conftest import UowFactory
from ..entities import an_attachment, at, committed_world

# Characters of one, two, three and four bytes of UTF-8: a cut counts characters, not bytes
LONG = "a é ∑ 😀 " * 5_000 + "the end"
SPACES = "".join(c for c in map(chr, range(0x110000)) if c.isspace())


async def _stored(
    uow_factory: UowFactory, *texts: str | None, truncated: bool = False
) -> list[Attachment]:
    world = await committed_world(uow_factory())
    files = []
    async with uow_factory() as uow:
        for i, text in enumerate(texts):
            attachment = an_attachment(world.project, world.user)
            if text is not None:
                attachment.start_processing(at(1))
                result = ExtractionResult(
                    text=text, method="text", page_count=2, truncated=truncated,
                    pages=(PageExtraction(page=1, method="text", chars=i), ),
                )  # fmt: skip
                attachment.complete(result, at(2))
            await uow.attachments.add(attachment)
            files.append(attachment)
        await uow.commit()
    return files


async def test_a_long_text_is_read_cut_to_the_characters_asked_with_its_whole_length(
    uow_factory: UowFactory,
) -> None:
    (long,) = await _stored(uow_factory, LONG, truncated=True)
    async with uow_factory() as uow:
        found = await uow.attachments.get_many_excerpts([long.id], 1_001)
    excerpt = found[long.id].extraction
    assert isinstance(excerpt, ExtractionExcerpt)
    assert excerpt.text == LONG[:1_001]
    assert len(excerpt.text) == 1_001
    assert excerpt.length == len(LONG) == 40_007
    assert excerpt.cut
    assert not excerpt.blank
    assert excerpt.truncated  # what extraction recorded comes along
    assert long.extraction is not None
    assert excerpt.pages == long.extraction.pages
    assert msgspec.structs.replace(found[long.id], extraction=long.extraction) == long


async def test_a_short_text_is_read_whole_and_files_without_text_have_no_extraction(
    uow_factory: UowFactory,
) -> None:
    short, pending = await _stored(uow_factory, "Total: 42 units", None)
    async with uow_factory() as uow:
        found = await uow.attachments.get_many_excerpts([short.id, pending.id], 20_000)
        nothing = await uow.attachments.get_many_excerpts([short.id], 0)
    assert found[pending.id] == pending
    excerpt = found[short.id].extraction
    assert isinstance(excerpt, ExtractionExcerpt)
    assert (excerpt.text, excerpt.length, excerpt.cut, excerpt.blank, excerpt.truncated) == (
        "Total: 42 units", 15, False, False, False,
    )  # fmt: skip
    assert nothing[short.id].extraction == msgspec.structs.replace(excerpt, text="")


async def test_a_text_is_blank_when_all_of_it_is_whitespace_not_only_the_part_read(
    uow_factory: UowFactory,
) -> None:
    blank, late, empty = await _stored(uow_factory, SPACES * 10, SPACES * 10 + "x", "")
    async with uow_factory() as uow:
        found = await uow.attachments.get_many_excerpts([blank.id, late.id, empty.id], 5)
    read = [found[f.id].extraction for f in (blank, late, empty)]
    assert [(e.text, e.length, e.blank) for e in read if isinstance(e, ExtractionExcerpt)] == [
        (SPACES[:5], 290, True), (SPACES[:5], 291, False), ("", 0, True),
    ]  # fmt: skip


async def test_missing_ids_are_left_out_and_nothing_asked_reads_nothing(
    uow_factory: UowFactory,
) -> None:
    (kept,) = await _stored(uow_factory, "kept")
    ghost = uuid.uuid4()
    async with uow_factory() as uow:
        assert list(await uow.attachments.get_many_excerpts([ghost, kept.id], 3)) == [kept.id]
        assert await uow.attachments.get_many_excerpts([], 3) == {}


async def test_an_attachment_read_with_an_excerpt_is_never_written_back(
    uow_factory: UowFactory,
) -> None:
    (long,) = await _stored(uow_factory, LONG)
    async with uow_factory() as uow:
        read = (await uow.attachments.get_many_excerpts([long.id], 10))[long.id]
        with pytest.raises(ValueError, match="read with an excerpt of its text"):
            await uow.attachments.update(read)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.attachments.get(long.id) == long


def test_blank_means_what_python_strip_removes() -> None:
    assert set(_WHITESPACE) == set(SPACES)
