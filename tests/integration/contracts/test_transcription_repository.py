"""Contract of TranscriptionRepository's lookup by attachment, in memory and on Postgres."""

from __future__ import annotations

from ..conftest import UowFactory
from ..entities import a_transcription, an_attachment, at, committed_world


async def test_an_attachments_transcription_is_found_by_the_attachment_the_newest_first(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    attachment, other = (
        an_attachment(world.project, world.user),
        an_attachment(world.project, world.user),
    )
    older = a_transcription(attachment, world.user)
    newer = a_transcription(attachment, world.user)
    newer.created_at = newer.updated_at = at(5)
    async with uow_factory() as uow:
        await uow.attachments.add(attachment)
        await uow.attachments.add(other)
        await uow.transcriptions.add(older)
        await uow.transcriptions.add(newer)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.transcriptions.get_for_attachment(attachment.id) == newer
        assert await uow.transcriptions.get_for_attachment(other.id) is None


async def test_a_finished_transcription_reads_back_with_its_text_and_status(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    attachment = an_attachment(world.project, world.user)
    transcription = a_transcription(attachment, world.user)
    async with uow_factory() as uow:
        await uow.attachments.add(attachment)
        await uow.transcriptions.add(transcription)
        await uow.commit()

    transcription.start(at(1))
    transcription.complete("Hello « ünïcode »", None, at(2))
    async with uow_factory() as uow:
        await uow.transcriptions.update(transcription)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.transcriptions.get_for_attachment(attachment.id) == transcription
