"""Contract of AttachmentRepository and TranscriptionRepository, in memory and on Postgres."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from uuid import UUID

import msgspec
import pytest

from whalli.domain.model.attachments import (
    Attachment,
    AttachmentStatus,
    ExtractionResult,
    PageExtraction,
)
from whalli.domain.model.errors import (
    AttachmentNotFound,
    Conflict,
    InvalidInput,
    TranscriptionNotFound,
)
from whalli.ports.unit_of_work import UnitOfWork

from ..conftest import UowFactory
from ..entities import a_transcription, an_attachment, at, committed_world

RESULT = ExtractionResult(
    text="Page one\nPage two « ünïcode »",
    method="text+ocr",
    page_count=2,
    pages=(
        PageExtraction(page=1, method="text", chars=8),
        PageExtraction(page=2, method="ocr", chars=9),
    ),
    truncated=True,
)


async def test_an_attachment_goes_through_extraction_and_reads_back_equal(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    attachment = an_attachment(world.project, world.user)
    async with uow_factory() as uow:
        await uow.attachments.add(attachment)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.attachments.get(attachment.id) == attachment
        attachment.start_processing(at(1))
        attachment.complete(RESULT, at(2))
        await uow.attachments.update(attachment)
        await uow.commit()

    async with uow_factory() as uow:
        stored = await uow.attachments.get(attachment.id)
    assert stored == attachment
    assert stored.status is AttachmentStatus.DONE
    assert stored.extraction == RESULT


async def test_an_unknown_attachment_is_not_found(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    ghost = an_attachment(world.project, world.user)
    async with uow_factory() as uow:
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await uow.attachments.get(ghost.id)
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await uow.attachments.get_for_update(ghost.id)
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await uow.attachments.update(ghost)
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await uow.attachments.delete(ghost.id)


async def test_get_many_reads_the_existing_ones_by_id_in_one_call(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    first, second, ghost = (an_attachment(world.project, world.user) for _ in range(3))
    async with uow_factory() as uow:
        await uow.attachments.add(first)
        await uow.attachments.add(second)
        await uow.commit()
    async with uow_factory() as uow:
        found = await uow.attachments.get_many([second.id, ghost.id, first.id, second.id])
        assert found == {first.id: first, second.id: second}
        assert await uow.attachments.get_many([]) == {}
        assert await uow.attachments.get_many([ghost.id]) == {}


async def test_a_deleted_attachment_is_gone_with_its_transcriptions(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    attachment = an_attachment(world.project, world.user)
    transcription = a_transcription(attachment, world.user)
    async with uow_factory() as uow:
        await uow.attachments.add(attachment)
        await uow.transcriptions.add(transcription)
        await uow.commit()
    async with uow_factory() as uow:
        await uow.attachments.delete(attachment.id)
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await uow.attachments.get(attachment.id)
        with pytest.raises(TranscriptionNotFound, match="Transcription not found"):
            await uow.transcriptions.get(transcription.id)


async def test_object_keys_are_unique(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    first = an_attachment(world.project, world.user)
    copy = msgspec.structs.replace(
        an_attachment(world.project, world.user), object_key=first.object_key
    )
    async with uow_factory() as uow:
        await uow.attachments.add(first)
        with pytest.raises(Conflict, match="conflicts with the current state"):
            await uow.attachments.add(copy)


async def test_attachments_are_listed_newest_first_up_to_the_limit(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    attachments = [an_attachment(world.project, world.user, now=at(s)) for s in (1, 3, 2, 2)]
    async with uow_factory() as uow:
        for attachment in attachments:
            await uow.attachments.add(attachment)
        await uow.commit()

    expected = sorted(attachments, key=lambda a: (a.created_at, a.id), reverse=True)
    async with uow_factory() as uow:
        assert await uow.attachments.list_for_project(world.project.id) == expected
        assert await uow.attachments.list_for_project(world.project.id, limit=3) == expected[:3]
        with pytest.raises(InvalidInput, match="limit must not be negative"):
            await uow.attachments.list_for_project(world.project.id, limit=-5)


async def test_the_attachments_after_one_seen_are_those_older_than_it_ties_broken_by_id(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    attachments = [an_attachment(world.project, world.user, now=at(s)) for s in (1, 3, 2, 2, 2)]
    async with uow_factory() as uow:
        for attachment in attachments:
            await uow.attachments.add(attachment)
        await uow.commit()

    expected = sorted(attachments, key=lambda a: (a.created_at, a.id), reverse=True)
    async with uow_factory() as uow:
        for i, seen in enumerate(expected):
            after = await uow.attachments.list_for_project(
                world.project.id, before=(seen.created_at, seen.id)
            )
            assert after == expected[i + 1 :]
        page = await uow.attachments.list_for_project(
            world.project.id, limit=2, before=(expected[1].created_at, expected[1].id)
        )
        assert page == expected[2:4]


async def test_get_for_update_lets_one_worker_at_a_time_change_a_row(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    attachment = an_attachment(world.project, world.user)
    async with uow_factory() as uow:
        await uow.attachments.add(attachment)
        await uow.commit()

    async def worker(n: int) -> None:
        async with uow_factory() as uow:
            locked = await uow.attachments.get_for_update(attachment.id)
            await asyncio.sleep(0)  # let the others reach the lock
            locked.filename += f"|{n}"
            await uow.attachments.update(locked)
            await uow.commit()

    await asyncio.gather(*(worker(n) for n in range(5)))

    async with uow_factory() as uow:
        stored = await uow.attachments.get(attachment.id)
    assert sorted(stored.filename.split("|")[1:]) == ["0", "1", "2", "3", "4"]


async def test_a_row_lock_is_released_when_the_unit_of_work_ends(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    attachment = an_attachment(world.project, world.user)
    async with uow_factory() as uow:
        await uow.attachments.add(attachment)
        await uow.commit()

    async with uow_factory() as uow:
        await uow.attachments.get_for_update(attachment.id)
        await uow.attachments.get_for_update(attachment.id)  # the holder may lock again
    async with uow_factory() as uow:
        assert await uow.attachments.get_for_update(attachment.id) == attachment


async def test_a_transcription_reads_back_equal_through_its_lifecycle(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    attachment = an_attachment(world.project, world.user)
    transcription = a_transcription(attachment, world.user, world.chat)
    async with uow_factory() as uow:
        await uow.attachments.add(attachment)
        await uow.transcriptions.add(transcription)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.transcriptions.get(transcription.id) == transcription
        transcription.start(at(1))
        transcription.complete("Bonjour à tous", None, at(2))
        transcription.language = "fr"
        await uow.transcriptions.update(transcription)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.transcriptions.get(transcription.id) == transcription


async def test_an_unknown_transcription_is_not_found(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    ghost = a_transcription(an_attachment(world.project, world.user), world.user)
    async with uow_factory() as uow:
        with pytest.raises(TranscriptionNotFound, match="Transcription not found"):
            await uow.transcriptions.get(uuid.uuid4())
        with pytest.raises(TranscriptionNotFound, match="Transcription not found"):
            await uow.transcriptions.update(ghost)


async def test_a_transcription_needs_an_existing_attachment(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await uow.transcriptions.add(
                a_transcription(an_attachment(world.project, world.user), world.user)
            )


async def test_extracted_text_with_a_nul_character_is_invalid_input(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    attachment = an_attachment(world.project, world.user)
    attachment.extraction = ExtractionResult(text="binary\x00junk", method="text")
    async with uow_factory() as uow:
        with pytest.raises(InvalidInput, match="could not be stored"):
            await uow.attachments.add(attachment)


async def test_stale_attachments_are_claimed_once_until_the_threshold_passes_again(
    uow_factory: UowFactory,
) -> None:
    base = -10 * time.time()  # the oldest rows are this test's (see the test above)

    def when(seconds: float) -> datetime:
        return at(base + seconds)

    world = await committed_world(uow_factory())
    old, older, recent = (
        an_attachment(world.project, world.user, now=when(s)) for s in (20, 10, 50)
    )
    processing = an_attachment(world.project, world.user, now=when(5))
    processing.start_processing(when(6))
    async with uow_factory() as uow:
        for attachment in (old, older, recent, processing):
            await uow.attachments.add(attachment)
        await uow.commit()
    mine = {a.id for a in (old, older, recent, processing)}

    async def claim(
        status: AttachmentStatus, before: float, now: float, limit: int = 100
    ) -> list[Attachment]:
        async with uow_factory() as uow:
            claimed = await uow.attachments.claim_stale(
                status, when(before), when(now), limit=limit
            )
            await uow.commit()
        return [a for a in claimed if a.id in mine]

    assert await claim(AttachmentStatus.PENDING, 30, 100, limit=1) == [
        msgspec.structs.replace(older, requeued_at=when(100))
    ]
    assert await claim(AttachmentStatus.PENDING, 30, 100) == [
        msgspec.structs.replace(old, requeued_at=when(100))
    ]
    assert await claim(AttachmentStatus.PROCESSING, 30, 100) == [
        msgspec.structs.replace(processing, requeued_at=when(100))
    ]
    # Requeued at 100: not stale again before 100 has passed; recent (changed at 50) is.
    assert [a.id for a in await claim(AttachmentStatus.PENDING, 90, 120)] == [recent.id]
    assert await claim(AttachmentStatus.PENDING, 100, 130) == []
    again = await claim(AttachmentStatus.PENDING, 125, 200)
    assert sorted(a.id for a in again) == sorted([old.id, older.id, recent.id])
    assert again[-1].id == recent.id  # least recently touched first: 100, 100, then 120
    async with uow_factory() as uow:
        assert (await uow.attachments.get(recent.id)).requeued_at == when(200)
        with pytest.raises(InvalidInput, match="limit must not be negative"):
            await uow.attachments.claim_stale(AttachmentStatus.PENDING, when(0), when(0), limit=-1)


async def test_a_stale_attachment_another_unit_of_work_holds_is_skipped_not_claimed_twice(
    uow_factory: UowFactory,
) -> None:
    base = -10 * time.time()

    def when(seconds: float) -> datetime:
        return at(base + seconds)

    world = await committed_world(uow_factory())
    claimed_first, held_by_worker = (
        an_attachment(world.project, world.user, now=when(s)) for s in (10, 20)
    )
    async with uow_factory() as uow:
        for attachment in (claimed_first, held_by_worker):
            await uow.attachments.add(attachment)
        await uow.commit()
    mine = {claimed_first.id, held_by_worker.id}

    async def claim(uow: UnitOfWork) -> list[UUID]:
        found = await uow.attachments.claim_stale(AttachmentStatus.PENDING, when(30), when(100))
        return [a.id for a in found if a.id in mine]

    async with uow_factory() as sweeper, uow_factory() as worker:
        await worker.attachments.get_for_update(held_by_worker.id)
        assert await claim(sweeper) == [claimed_first.id]
        async with uow_factory() as other_sweeper:
            assert await claim(other_sweeper) == []  # without waiting for the first sweeper
        await sweeper.commit()
        async with uow_factory() as later_sweeper:
            assert await claim(later_sweeper) == []  # claimed_first was stamped at 100
    async with uow_factory() as sweeper:
        assert await claim(sweeper) == [held_by_worker.id]  # the worker let it go unchanged
