"""Regenerating (or editing) a question whose file is gone since: the reply is made again
without it, as a later message's context leaves it out; a new message naming it is refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import pytest

from tests.integration.entities import World, committed_world
from tests.unit.services.test_start_chat_attachments import CATALOG, Chats, start
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.attachments import Attachment
from whalli.domain.model.chats import MessageStatus, TokenUsage
from whalli.domain.model.errors import AttachmentNotFound
from whalli.domain.services.chat.regenerate_reply import (
    RegeneratedReply,
    RegenerateReply,
    RegenerateReplyHandler,
)
from whalli.domain.services.chat.start_chat import StartedChat

ATTACHED = "Attached file: budget.pdf"


async def answered_with_file(chats: Chats) -> tuple[World, Attachment, StartedChat]:
    world, attachment = await chats.world_with_file()
    await chats.finish(attachment)
    started = await chats.handler(wait_s=0).execute(start(world, attachment))
    assert ATTACHED in started.prepared.prompt[-1].content
    reply = msgspec.structs.replace(started.prepared.reply)
    reply.finish(status=MessageStatus.COMPLETE, content="Ok", now=chats.clock.now(),
                 usage=TokenUsage())  # fmt: skip
    async with InMemoryUnitOfWork(chats.store) as uow:
        await uow.chats.update_message(reply)
        await uow.commit()
    return world, attachment, started


async def regenerate(
    chats: Chats, world: World, started: StartedChat, message: str | None = None
) -> RegeneratedReply:
    handler = RegenerateReplyHandler(
        InMemoryUnitOfWork(chats.store), InMemoryChatSessionStore(chats.clock), CATALOG,
        frozenset({"dev"}), clock=chats.clock, ids=SequentialIds(start=1000),
    )  # fmt: skip
    return await handler.execute(
        RegenerateReply(user_id=world.user.id, chat_id=started.chat_id, message=message)
    )


async def deleted(chats: Chats, world: World, attachment: Attachment) -> None:
    async with InMemoryUnitOfWork(chats.store) as uow:
        await uow.attachments.delete(attachment.id)
        await uow.commit()


async def moved(chats: Chats, world: World, attachment: Attachment) -> None:
    elsewhere = await committed_world(InMemoryUnitOfWork(chats.store))
    async with InMemoryUnitOfWork(chats.store) as uow:
        stored = await uow.attachments.get(attachment.id)
        stored.project_id = elsewhere.project.id
        await uow.attachments.update(stored)
        await uow.commit()


@pytest.mark.parametrize("gone", [deleted, moved], ids=["deleted", "moved"])
@pytest.mark.parametrize("edit", [None, "Summarise it in one line"], ids=["again", "edited"])
async def test_a_question_whose_file_is_gone_is_answered_again_without_it(
    gone: Callable[[Chats, World, Attachment], Awaitable[None]], edit: str | None
) -> None:
    chats = Chats()
    world, attachment, started = await answered_with_file(chats)
    await gone(chats, world, attachment)

    again = await regenerate(chats, world, started, edit)

    assert again.message_id == started.message_id
    asked = again.prepared.prompt[-1].content
    assert ATTACHED not in asked
    assert asked.endswith(edit or "Summarise the file")
    assert again.prepared.reply.status is MessageStatus.PENDING


async def test_a_new_message_naming_a_deleted_file_is_still_refused() -> None:
    chats = Chats()
    world, attachment, _ = await answered_with_file(chats)
    await deleted(chats, world, attachment)

    with pytest.raises(AttachmentNotFound, match="File not found"):
        await chats.handler(wait_s=0).execute(start(world, attachment))
