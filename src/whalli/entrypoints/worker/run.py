"""``whalli worker``: the production worker, wired through the composition root."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import cast

from whalli.adapters.structlog.logging import configure_logging
from whalli.config import Settings
from whalli.container import Container, abandoned_job_handlers, build_container, job_handlers
from whalli.domain.services.chats.fail_abandoned_replies import FailAbandonedReplies
from whalli.domain.services.files.requeue_stale import RequeueStaleAttachments
from whalli.domain.services.files.spool import remove_dead_spools
from whalli.domain.services.searches.schedule_due import ScheduleDueSearches
from whalli.entrypoints.worker.dispatch import JobDispatcher
from whalli.entrypoints.worker.main import run_worker
from whalli.entrypoints.worker.sweeper import run_periodically
from whalli.ports.cache import Cache


async def _resolved(value: object) -> object:
    return await value if inspect.isawaitable(value) else value


class ContainerWorker:
    """Adapts the dependency-injector container to what the worker asks of it, and runs the
    sweepers (extractions, abandoned replies, due searches) on the worker's event loop while
    the resources are open."""

    def __init__(self, container: Container, settings: Settings) -> None:
        self.container = container
        self.settings = settings
        self._sweepers: list[asyncio.Task[None]] = []

    async def init_resources(self) -> None:
        await _resolved(self.container.init_resources())
        # per queue: deployments (and tests) sharing one Redis sweep on their own
        queue = self.settings.queue_name
        self._sweep(
            self._requeue_stale,
            self.settings.extraction_sweep_interval_s,
            f"sweeper:extractions:{queue}",
            "extraction sweep",
        )
        self._sweep(
            self._fail_abandoned_replies,
            self.settings.reply_sweep_interval_s,
            f"sweeper:replies:{queue}",
            "reply sweep",
        )
        # recurring searches: only with a search provider (else no subscription can exist)
        self._sweep(
            self._schedule_searches,
            self.settings.search_schedule_interval_s if self.settings.search_provider else 0,
            f"sweeper:searches:{queue}",
            "search scheduler",
        )

    def _sweep(
        self, task: Callable[[], Awaitable[None]], interval_s: float, lock_key: str, name: str
    ) -> None:
        if interval_s > 0:  # 0: that sweeper is off
            self._sweepers.append(
                asyncio.create_task(
                    run_periodically(
                        task, self._cache, interval_s=interval_s, lock_key=lock_key, name=name
                    )
                )
            )

    async def _requeue_stale(self) -> None:
        service = await _resolved(self.container.services.requeue_stale_attachments())
        assert isinstance(service, RequeueStaleAttachments)
        await service.execute()

    async def _fail_abandoned_replies(self) -> None:
        service = await _resolved(self.container.services.fail_abandoned_replies())
        assert isinstance(service, FailAbandonedReplies)
        await service.execute()

    async def _schedule_searches(self) -> None:
        service = await _resolved(self.container.services.schedule_due_searches())
        assert isinstance(service, ScheduleDueSearches)
        await service.execute()

    async def _cache(self) -> Cache:
        return cast(Cache, await _resolved(self.container.adapters.cache()))

    async def shutdown_resources(self) -> None:
        for sweeper in self._sweepers:
            sweeper.cancel()
        for sweeper in self._sweepers:
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        self._sweepers.clear()
        await _resolved(self.container.shutdown_resources())

    def job_dispatcher(self) -> JobDispatcher:
        return JobDispatcher(job_handlers(self.container), abandoned_job_handlers(self.container))


def run(settings: Settings) -> int:
    # Tesseract (OpenMP) would start a thread per core in every job of every worker process:
    # one thread each, so that parallel workers do not oversubscribe the cores. Set before
    # anything starts, so every child process (the extraction sandbox's fork server) inherits it.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    configure_logging(
        settings.log_level, settings.log_dir, json=settings.log_json, process_name="worker"
    )
    # the downloads of workers killed mid-job (their cleanup never ran), before any job starts
    remove_dead_spools(settings.extraction_temp_dir or None)
    return run_worker(settings, lambda: ContainerWorker(build_container(settings), settings))
