"""A fake composition root and fake health probes for HTTP tests."""

from __future__ import annotations

import asyncio
from typing import Literal

from whalli.config import Settings
from whalli.domain.model.errors import ServiceUnavailable
from whalli.domain.services.check_readiness import CheckReadiness
from whalli.ports.health import HealthProbe

ProbeState = Literal["ok", "down", "hanging"]


class FakeProbe(HealthProbe):
    def __init__(self, name: str, state: ProbeState = "ok") -> None:
        self.name = name
        self.state: ProbeState = state

    async def check(self) -> None:
        if self.state == "down":
            raise ServiceUnavailable("connection refused")
        if self.state == "hanging":
            await asyncio.Event().wait()


class FakeContainer:
    def __init__(self, settings: Settings, probes: list[FakeProbe]) -> None:
        self._settings = settings
        self.probes = probes
        self.events: list[str] = []

    @property
    def settings(self) -> Settings:
        return self._settings

    async def check_readiness(self) -> CheckReadiness:
        return CheckReadiness(list(self.probes), timeout=0.05)

    async def init_resources(self) -> None:
        self.events.append("init")

    async def shutdown_resources(self) -> None:
        self.events.append("shutdown")
