"""A start or a regeneration reads its images from blob storage outside its transaction: no
database connection, and no lock on the chat, is held while the store answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Self

import msgspec

from tests.integration.entities import World, an_attachment, committed_world
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.attachments import Attachment, ExtractionResult
from whalli.domain.model.catalog import ModelCatalog, ModelSpec
from whalli.domain.model.chats import MessageStatus, PromptMessage, TokenUsage
from whalli.domain.model.images import ImagePart
from whalli.domain.model.users import Plan
from whalli.domain.services.chat.context import PreparedReply
from whalli.domain.services.chat.regenerate_reply import RegenerateReply, RegenerateReplyHandler
from whalli.domain.services.chat.start_chat import StartChat, StartChatHandler, StartedChat

MODEL = "openai/vision"
VISION = ModelSpec(
    id=MODEL, provider="openai", upstream="vision", min_plan=Plan.FREE,
    input_usd_per_mtok=0.0, output_usd_per_mtok=0.0, context_window=100_000, vision=True,
)  # fmt: skip
CATALOG = ModelCatalog([VISION])
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 50


class WatchedUnitOfWork(InMemoryUnitOfWork):
    """Knows whether a block of it (a transaction, autocommit or read-only) is open now."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.open = 0

    async def __aenter__(self) -> Self:
        entered = await super().__aenter__()
        self.open += 1
        return entered

    async def __aexit__(self, *exc_info: object) -> None:
        self.open -= 1
        await super().__aexit__(*exc_info)  # type: ignore[arg-type]

    def autocommit(self) -> AbstractAsyncContextManager[Self]:
        return self._watched(super().autocommit())

    def read_only(self) -> AbstractAsyncContextManager[Self]:
        return self._watched(super().read_only())

    @asynccontextmanager
    async def _watched(self, block: AbstractAsyncContextManager[Self]) -> AsyncIterator[Self]:
        async with block as uow:
            self.open += 1
            try:
                yield uow
            finally:
                self.open -= 1


class WatchingBlobs(InMemoryBlobStorage):
    """Records, at each read, whether the unit of work had a block open."""

    def __init__(self, uow: WatchedUnitOfWork) -> None:
        super().__init__()
        self.uow = uow
        self.read_inside: list[bool] = []

    async def get(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        self.read_inside.append(self.uow.open > 0)
        return await super().get(key, chunk_size=chunk_size)


class Setup:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.uow = WatchedUnitOfWork(self.store)
        self.blobs = WatchingBlobs(self.uow)
        self.sessions = InMemoryChatSessionStore(self.clock)
        self.ids = SequentialIds()

    async def image(self, world: World) -> Attachment:
        attachment = an_attachment(world.project, world.user, now=self.clock.now())
        attachment.filename, attachment.content_type = "photo.png", "image/png"
        attachment.size_bytes = len(PNG)
        attachment.start_processing(self.clock.now())
        attachment.complete(ExtractionResult(text="OCR text", method="ocr"), self.clock.now())

        async def body() -> AsyncIterator[bytes]:
            yield PNG

        await self.blobs.put(attachment.object_key, body(), "image/png")
        async with InMemoryUnitOfWork(self.store) as uow:
            await uow.attachments.add(attachment)
            await uow.commit()
        return attachment

    def starter(self) -> StartChatHandler:
        return StartChatHandler(
            self.uow, self.sessions, CATALOG, frozenset({"openai"}), clock=self.clock,
            ids=self.ids, blobs=self.blobs,
        )  # fmt: skip


def images_in(prompt: tuple[PromptMessage, ...]) -> list[ImagePart]:
    return [image for message in prompt for image in message.images]


async def photo_chat(setup: Setup) -> tuple[World, StartedChat]:
    """A new chat whose first message has a photo attached."""
    world = await committed_world(InMemoryUnitOfWork(setup.store))
    photo = await setup.image(world)
    start = StartChat(
        user_id=world.user.id, project_id=world.project.id, model=MODEL,
        message="What is in it?", attachment_ids=(photo.id,),
    )  # fmt: skip
    return world, await setup.starter().execute(start)


async def test_a_start_reads_its_images_outside_its_transaction_and_sends_them() -> None:
    setup = Setup()
    world, first = await photo_chat(setup)

    assert setup.blobs.read_inside == [False]
    assert len(images_in(first.prepared.prompt)) == 1

    # a message in that chat: the earlier image is read again, still outside the transaction
    # (which locks the chat)
    again = StartChat(
        user_id=world.user.id, chat_id=first.chat_id, model=MODEL, message="And now?",
    )  # fmt: skip
    second = await setup.starter().execute(again)

    assert setup.blobs.read_inside == [False, False]
    assert len(images_in(second.prepared.prompt)) == 1
    assert setup.uow.open == 0


async def test_a_regeneration_reads_its_images_outside_its_transaction() -> None:
    setup = Setup()
    world, started = await photo_chat(setup)
    reply = msgspec.structs.replace(started.prepared.reply)  # the reply finished
    reply.finish(
        status=MessageStatus.COMPLETE, content="A photo.", now=setup.clock.now(),
        usage=TokenUsage(),
    )  # fmt: skip
    async with InMemoryUnitOfWork(setup.store) as uow:
        await uow.chats.update_message(reply)
        await uow.commit()
    launched: list[PreparedReply] = []

    def launch(session: object, prepared: PreparedReply, saved: object) -> None:
        launched.append(prepared)

    regenerator = RegenerateReplyHandler(
        setup.uow, setup.sessions, CATALOG, frozenset({"openai"}), clock=setup.clock,
        ids=setup.ids, blobs=setup.blobs,
    )  # fmt: skip
    regenerated = await regenerator.execute(
        RegenerateReply(user_id=world.user.id, chat_id=started.chat_id), launch
    )

    assert setup.blobs.read_inside == [False, False]
    assert len(images_in(regenerated.prepared.prompt)) == 1
    assert launched == [regenerated.prepared]
    assert regenerated.replaced_message_id == reply.id
