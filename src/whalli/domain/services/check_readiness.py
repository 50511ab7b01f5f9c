"""Use case: report whether every backing service answers."""

from __future__ import annotations

import asyncio

import msgspec

from whalli.domain.model.errors import ServiceUnavailable
from whalli.ports.health import HealthProbe


class Readiness(msgspec.Struct, frozen=True):
    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(v == "ok" for v in self.checks.values())


class CheckReadiness:
    """Probe every backing service concurrently.

    Rules:
    - each service is reported as ``ok`` or with a short reason; one failing never hides another;
    - a probe that does not answer within ``timeout`` seconds counts as failed;
    - reasons come from the adapters, which never include credentials.
    """

    def __init__(self, probes: list[HealthProbe], timeout: float = 2.0) -> None:
        self._probes = probes
        self._timeout = timeout

    async def execute(self) -> Readiness:
        results = await asyncio.gather(*(self._one(p) for p in self._probes))
        return Readiness(checks=dict(zip([p.name for p in self._probes], results, strict=True)))

    async def _one(self, probe: HealthProbe) -> str:
        try:
            await asyncio.wait_for(probe.check(), self._timeout)
        except TimeoutError:
            return "timeout"
        except ServiceUnavailable as e:
            return e.message
        return "ok"
