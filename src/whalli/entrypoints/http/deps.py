"""What the HTTP app needs from the composition root, and the Litestar providers asking it."""

from __future__ import annotations

from typing import Protocol

from litestar.di import Provide

from whalli.config import Settings
from whalli.domain.services.check_readiness import CheckReadiness


class AppContainer(Protocol):
    """The slice of the composition root the HTTP app uses (the container satisfies it via a
    thin wrapper). ``init_resources``/``shutdown_resources`` run on app startup/shutdown."""

    @property
    def settings(self) -> Settings: ...

    async def check_readiness(self) -> CheckReadiness: ...

    async def init_resources(self) -> None: ...

    async def shutdown_resources(self) -> None: ...


def build_dependencies(container: AppContainer) -> dict[str, Provide]:
    """Litestar dependencies, by parameter name; each asks the container on every request."""

    def provide_settings() -> Settings:
        return container.settings

    async def provide_check_readiness() -> CheckReadiness:
        return await container.check_readiness()

    return {
        "settings": Provide(provide_settings, sync_to_thread=False),
        "check_readiness": Provide(provide_check_readiness),
    }
