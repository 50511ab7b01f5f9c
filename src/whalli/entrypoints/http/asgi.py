"""The ASGI entry: ``uvicorn --factory whalli.entrypoints.http.asgi:app_factory``."""

from __future__ import annotations

import inspect

import structlog
from litestar import Litestar

from whalli.adapters.structlog.logging import configure_logging
from whalli.config import Settings, load_settings
from whalli.container import Container, build_container
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.services.check_readiness import CheckReadiness
from whalli.entrypoints.http.app import create_app

log = structlog.get_logger(__name__)


class ContainerApp:
    """Adapts the dependency-injector container to what the HTTP app asks of it."""

    def __init__(self, container: Container) -> None:
        self.container = container

    @property
    def settings(self) -> Settings:
        settings: Settings = self.container.settings()
        return settings

    async def check_readiness(self) -> CheckReadiness:
        # Providers that depend on async resources (pools) hand back awaitables.
        service: CheckReadiness = await self.container.services.check_readiness()
        return service

    async def init_resources(self) -> None:
        result = self.container.init_resources()
        if inspect.isawaitable(result):
            await result
        try:
            storage = self.container.adapters.blob_storage()
            await storage.ensure_bucket()
        except ServiceUnavailable as e:
            # Start anyway: readiness reports s3 until it answers, and the bucket is retried then.
            log.warning("s3_bucket_not_ensured", reason=e.message)

    async def shutdown_resources(self) -> None:
        result = self.container.shutdown_resources()
        if inspect.isawaitable(result):
            await result


def build_app(settings: Settings, container: Container | None = None) -> Litestar:
    return create_app(ContainerApp(container or build_container(settings)))


def app_factory() -> Litestar:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_dir, json=settings.log_json)
    return build_app(settings)
