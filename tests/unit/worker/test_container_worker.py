"""The production worker's wiring: extraction jobs have a handler, and the sweeper runs on the
worker's event loop while the resources are open (adapters swapped by container override)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Self

from dependency_injector import providers

from tests.integration.entities import an_attachment, committed_world
from tests.unit.test_container import UNREACHABLE
from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.job_queue import InMemoryJobQueue
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.config import load_settings
from whalli.container import build_container
from whalli.domain.model.chats import Message, MessageStatus
from whalli.domain.model.jobs import (
    ExtractAttachment,
    Ping,
    RunSearchSubscription,
    SendEmailVerification,
    SendPasswordReset,
    TitleChat,
)
from whalli.domain.model.replies import INTERRUPTED_MESSAGE as INTERRUPTED
from whalli.entrypoints.worker.run import ContainerWorker


async def test_the_worker_handles_extractions_and_sweeps_stale_attachments_periodically() -> None:
    settings = load_settings(
        {
            **UNREACHABLE,
            "WHALLI_EXTRACTION_SWEEP_INTERVAL_S": "0.01",
            "WHALLI_EXTRACTION_STALE_AFTER_S": "60",
        },
        dotenv=None,
    )
    container = build_container(settings)
    store, clock, queue = MemoryStore(), ManualClock(), InMemoryJobQueue()
    container.adapters.unit_of_work.override(providers.Factory(InMemoryUnitOfWork, store))
    container.adapters.cache.override(providers.Object(InMemoryCache(clock)))
    container.adapters.clock.override(providers.Object(clock))
    container.adapters.job_queue.override(providers.Object(queue))
    world = await committed_world(InMemoryUnitOfWork(store))
    stale = an_attachment(world.project, world.user, now=clock.now())
    async with InMemoryUnitOfWork(store) as uow:
        await uow.attachments.add(stale)
        await uow.commit()
    clock.advance(timedelta(minutes=2))
    worker = ContainerWorker(container, settings)

    assert worker.job_dispatcher().job_types == {
        Ping,
        ExtractAttachment,
        TitleChat,
        RunSearchSubscription,
        SendPasswordReset,
        SendEmailVerification,
    }
    await worker.init_resources()
    try:
        for _ in range(2000):
            if queue.jobs:
                break
            await asyncio.sleep(0.005)
    finally:
        await worker.shutdown_resources()
    assert queue.jobs == [ExtractAttachment(attachment_id=stale.id)]


class SignallingUnitOfWork(InMemoryUnitOfWork):
    """Sets ``committed`` at each commit, and as each autocommitted block ends: the test
    awaits the sweep instead of polling."""

    def __init__(self, store: MemoryStore, committed: asyncio.Event) -> None:
        super().__init__(store)
        self._committed = committed

    async def commit(self) -> None:
        await super().commit()
        self._committed.set()

    @contextlib.asynccontextmanager
    async def autocommit(self) -> AsyncIterator[Self]:
        async with super().autocommit() as uow:
            yield uow
        self._committed.set()


async def test_the_worker_ends_replies_abandoned_by_a_dead_generator_periodically() -> None:
    settings = load_settings(
        {
            **UNREACHABLE,
            "WHALLI_EXTRACTION_SWEEP_INTERVAL_S": "0",  # off: the reply sweep commits alone
            "WHALLI_REPLY_SWEEP_INTERVAL_S": "0.01",
            "WHALLI_REPLY_ABANDONED_AFTER_S": "60",
        },
        dotenv=None,
    )
    container = build_container(settings)
    store, clock, committed = MemoryStore(), ManualClock(), asyncio.Event()
    container.adapters.unit_of_work.override(
        providers.Factory(SignallingUnitOfWork, store, committed)
    )
    container.adapters.cache.override(providers.Object(InMemoryCache(clock)))
    container.adapters.clock.override(providers.Object(clock))
    world = await committed_world(InMemoryUnitOfWork(store))
    reply = Message.pending_reply(
        id=uuid.uuid4(), chat_id=world.chat.id, model="m", provider="p", now=clock.now()
    )
    async with InMemoryUnitOfWork(store) as uow:
        await uow.chats.add_message(reply)
        await uow.commit()
    clock.advance(timedelta(minutes=2))
    worker = ContainerWorker(container, settings)

    await worker.init_resources()
    try:
        async with asyncio.timeout(60):  # only a guard against a hang: the sweep runs at once
            await committed.wait()
    finally:
        await worker.shutdown_resources()
    async with InMemoryUnitOfWork(store).read_only() as uow:
        stored = await uow.chats.get_message(reply.id)
    assert (stored.status, stored.error) == (MessageStatus.FAILED, INTERRUPTED)
