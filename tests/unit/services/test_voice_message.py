"""A start without text: the transcript of its attached recordings is the message."""

from __future__ import annotations

import msgspec
import pytest

from tests.integration.entities import World, an_attachment
from tests.unit.services.test_start_chat_attachments import Chats
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.model.errors import AttachmentNotReady, InvalidInput
from whalli.domain.services.chat.start_chat import StartChat


async def _file(chats: Chats, world: World, name: str, kind: str, text: str | None) -> Attachment:
    """A file of ``kind`` (a content type) whose text is ``text`` (``None``: not ready)."""
    attachment = an_attachment(world.project, world.user, now=chats.clock.now())
    attachment.filename, attachment.content_type = name, kind
    if text is not None:
        attachment.start_processing(chats.clock.now())
        attachment.complete(ExtractionResult(text=text, method="speech"), chats.clock.now())
    async with InMemoryUnitOfWork(chats.store) as uow:
        await uow.attachments.add(attachment)
        await uow.commit()
    return attachment


def _voice(world: World, *files: Attachment) -> StartChat:
    return StartChat(
        user_id=world.user.id, model="dev/echo", message="", project_id=world.project.id,
        attachment_ids=tuple(f.id for f in files),
    )  # fmt: skip


async def test_the_recordings_transcripts_are_the_message_and_the_other_files_stay_attached() -> (
    None
):
    chats = Chats()
    world, notes = await chats.world_with_file()
    await chats.finish(notes)
    first = await _file(chats, world, "a.ogg", "audio/ogg", "  What does the budget say?  ")
    second = await _file(chats, world, "b.wav", "audio/wav", "And the schedule.")

    started = await chats.handler(wait_s=0).execute(_voice(world, first, notes, second))

    message = chats.store.tables["messages"][started.message_id]
    assert message.content == "What does the budget say?\n\nAnd the schedule."
    assert message.attachment_ids == (notes.id,)  # a recording's words go once: as the text
    chat = chats.store.tables["chats"][started.chat_id]
    assert chat.title == "What does the budget say? And the schedule."
    last = started.prepared.prompt[-1].content
    assert last.endswith("What does the budget say?\n\nAnd the schedule.")
    assert "Attached file: budget.pdf" in last
    assert "a.ogg" not in last


@pytest.mark.parametrize("spoken", [None, "   "], ids=["no recording", "nothing heard"])
async def test_a_start_without_text_needs_a_recording_that_says_something(
    spoken: str | None,
) -> None:
    chats = Chats()
    world, notes = await chats.world_with_file()
    await chats.finish(notes)
    files = [notes]
    if spoken is not None:
        files.append(await _file(chats, world, "silence.wav", "audio/wav", spoken))

    with pytest.raises(InvalidInput) as refused:
        await chats.handler(wait_s=0).execute(_voice(world, *files))

    assert refused.value.details["field"] == "message"
    assert chats.store.tables.get("messages", {}) == {}


async def test_a_recording_still_being_transcribed_is_waited_for_as_any_file() -> None:
    chats = Chats()
    world, _ = await chats.world_with_file()
    pending = await _file(chats, world, "memo.webm", "audio/webm", None)

    with pytest.raises(AttachmentNotReady):
        await chats.handler(wait_s=0).execute(_voice(world, pending))
    assert msgspec.structs.asdict(pending)["status"] == "pending"
