"""``whalli worker``: the production worker, wired through the composition root."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from typing import cast

from whalli.adapters.structlog.logging import configure_logging
from whalli.config import Settings
from whalli.container import Container, build_container, job_handlers
from whalli.domain.services.files.requeue_stale import RequeueStaleAttachments
from whalli.entrypoints.worker.dispatch import JobDispatcher
from whalli.entrypoints.worker.main import run_worker
from whalli.entrypoints.worker.sweeper import run_periodically
from whalli.ports.cache import Cache


async def _resolved(value: object) -> object:
    return await value if inspect.isawaitable(value) else value


class ContainerWorker:
    """Adapts the dependency-injector container to what the worker asks of it, and runs the
    extraction sweeper on the worker's event loop while the resources are open."""

    def __init__(self, container: Container, settings: Settings) -> None:
        self.container = container
        self.settings = settings
        self._sweeper: asyncio.Task[None] | None = None

    async def init_resources(self) -> None:
        await _resolved(self.container.init_resources())
        interval = self.settings.extraction_sweep_interval_s
        if interval > 0:
            self._sweeper = asyncio.create_task(
                run_periodically(
                    self._requeue_stale,
                    self._cache,
                    interval_s=interval,
                    # per queue: deployments (and tests) sharing one Redis sweep on their own
                    lock_key=f"sweeper:extractions:{self.settings.queue_name}",
                    name="extraction sweep",
                )
            )

    async def _requeue_stale(self) -> None:
        service = await _resolved(self.container.services.requeue_stale_attachments())
        assert isinstance(service, RequeueStaleAttachments)
        await service.execute()

    async def _cache(self) -> Cache:
        return cast(Cache, await _resolved(self.container.adapters.cache()))

    async def shutdown_resources(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await _resolved(self.container.shutdown_resources())

    def job_dispatcher(self) -> JobDispatcher:
        return JobDispatcher(job_handlers(self.container))


def run(settings: Settings) -> int:
    # Tesseract (OpenMP) would start a thread per core in every job of every worker process:
    # one thread each, so that parallel workers do not oversubscribe the cores. Set before
    # anything starts, so every child process (the extraction sandbox's fork server) inherits it.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    configure_logging(
        settings.log_level, settings.log_dir, json=settings.log_json, process_name="worker"
    )
    return run_worker(settings, lambda: ContainerWorker(build_container(settings), settings))
