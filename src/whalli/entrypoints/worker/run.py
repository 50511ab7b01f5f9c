"""``whalli worker``: the production worker, wired through the composition root."""

from __future__ import annotations

from whalli.adapters.structlog.logging import configure_logging
from whalli.config import Settings
from whalli.container import Container, build_container, job_handlers
from whalli.entrypoints.worker.dispatch import JobDispatcher
from whalli.entrypoints.worker.main import run_worker


class ContainerWorker:
    """Adapts the dependency-injector container to what the worker asks of it."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def init_resources(self) -> object:
        return self.container.init_resources()

    def shutdown_resources(self) -> object:
        return self.container.shutdown_resources()

    def job_dispatcher(self) -> JobDispatcher:
        return JobDispatcher(job_handlers(self.container))


def run(settings: Settings) -> int:
    configure_logging(
        settings.log_level, settings.log_dir, json=settings.log_json, process_name="worker"
    )
    return run_worker(settings, lambda: ContainerWorker(build_container(settings)))
