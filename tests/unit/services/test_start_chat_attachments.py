"""Starting a chat with attached files: a start waits a little for an extraction to finish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Self

import pytest

from tests.integration.entities import World, an_attachment, committed_world
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.chats import MessageStatus
from whalli.domain.model.errors import AttachmentNotFound, AttachmentNotReady
from whalli.domain.model.users import Plan
from whalli.domain.services.chat.start_chat import StartChat, StartChatHandler

CATALOG = ModelCatalog(
    [
        ModelSpec(
            id="dev/echo",
            provider="dev",
            upstream="echo",
            min_plan=Plan.FREE,
            input_usd_per_mtok=0.0,
            output_usd_per_mtok=0.0,
            context_window=8000,
        )
    ]
)


class CountingUnitOfWork(InMemoryUnitOfWork):
    """Counts its transactions, to tell how many times a start was tried."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.entered = 0

    async def __aenter__(self) -> Self:
        self.entered += 1
        return await super().__aenter__()

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Self]:
        self.entered += 1
        async with super().autocommit() as uow:
            yield uow


class Chats:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.uow = CountingUnitOfWork(self.store)

    def handler(self, wait_s: float) -> StartChatHandler:
        return StartChatHandler(
            self.uow, InMemoryChatSessionStore(self.clock), CATALOG, frozenset({"dev"}),
            clock=self.clock, ids=SequentialIds(), attachment_wait_s=wait_s,
            attachment_poll_s=0.01,
        )  # fmt: skip

    async def world_with_file(self) -> tuple[World, Attachment]:
        world = await committed_world(InMemoryUnitOfWork(self.store))
        attachment = an_attachment(world.project, world.user, now=self.clock.now())
        attachment.filename = "budget.pdf"
        async with InMemoryUnitOfWork(self.store) as uow:
            await uow.attachments.add(attachment)
            await uow.commit()
        return world, attachment

    async def finish(self, attachment: Attachment, *, failure: str | None = None) -> None:
        async with InMemoryUnitOfWork(self.store) as uow:
            stored = await uow.attachments.get_for_update(attachment.id)
            stored.start_processing(self.clock.now())
            if failure:
                stored.fail(failure, self.clock.now())
            else:
                stored.complete(ExtractionResult(text="Budget", method="text"), self.clock.now())
            await uow.attachments.update(stored)
            await uow.commit()


def start(world: World, attachment: Attachment) -> StartChat:
    return StartChat(
        user_id=world.user.id,
        model="dev/echo",
        message="Summarise the file",
        project_id=world.project.id,
        attachment_ids=(attachment.id,),
    )


async def test_a_start_waits_for_an_extraction_that_finishes_within_the_wait() -> None:
    chats = Chats()
    world, attachment = await chats.world_with_file()

    async def finish_soon() -> None:
        while chats.uow.entered < 2:  # the start has found the file not ready, at least once
            await asyncio.sleep(0.005)
        await chats.finish(attachment)

    started, _ = await asyncio.gather(
        chats.handler(wait_s=60).execute(start(world, attachment)), finish_soon()
    )

    assert started.session.attachment_ids == (attachment.id,)
    message, reply = sorted(chats.store.tables["messages"].values(), key=lambda m: m.id)
    assert message.id == started.message_id
    assert message.attachment_ids == (attachment.id,)
    assert reply.id == started.prepared.reply.id
    assert reply.status == MessageStatus.PENDING
    # the file's text is in the prompt the generation will send
    assert "Attached file: budget.pdf" in started.prepared.prompt[-1].content


async def test_a_file_still_pending_after_the_wait_is_not_ready_naming_it() -> None:
    chats = Chats()
    world, attachment = await chats.world_with_file()

    with pytest.raises(AttachmentNotReady, match=r"'budget\.pdf' is not ready") as raised:
        await chats.handler(wait_s=0.05).execute(start(world, attachment))

    assert raised.value.details["filename"] == "budget.pdf"
    assert chats.uow.entered > 1  # it looked again before giving up
    assert chats.store.tables["messages"] == {}
    assert [c.id for c in chats.store.tables["chats"].values()] == [world.chat.id]


async def test_a_failed_extraction_answers_at_once_with_its_reason() -> None:
    chats = Chats()
    world, attachment = await chats.world_with_file()
    await chats.finish(attachment, failure="the PDF is encrypted")

    with pytest.raises(AttachmentNotReady, match="the PDF is encrypted") as raised:
        await chats.handler(wait_s=60).execute(start(world, attachment))

    assert raised.value.details["attachment_status"] == "failed"
    assert chats.uow.entered == 1


async def test_a_file_of_another_project_is_not_found_without_waiting() -> None:
    chats = Chats()
    world, _ = await chats.world_with_file()
    _, foreign = await chats.world_with_file()

    with pytest.raises(AttachmentNotFound, match="File not found"):
        await chats.handler(wait_s=60).execute(start(world, foreign))
    assert chats.uow.entered == 1
