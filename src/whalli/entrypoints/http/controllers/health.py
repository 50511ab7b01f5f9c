"""Liveness and readiness."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from whalli.domain.services.check_readiness import CheckReadiness
from whalli.entrypoints.http.schemas import HealthStatus
from whalli.entrypoints.http.security import PUBLIC


class HealthController(Controller):
    path = "/api/health"
    tags = ["health"]
    opt = {**PUBLIC, "rate_limit": False}  # probes are never refused

    @get("/", summary="Liveness: the process answers (touches no backing service)")
    async def live(self) -> HealthStatus:
        return HealthStatus(status="ok")

    @get(
        "/ready",
        summary="Readiness: every backing service answers",
        description='200 or 503 with one key per service: "ok" or why it failed.',
        responses={
            503: ResponseSpec(
                data_container=dict[str, str],
                description="At least one backing service failed",
                generate_examples=False,
            )
        },
    )
    async def ready(
        self, check_readiness: NamedDependency[CheckReadiness]
    ) -> Response[dict[str, str]]:
        # Probed on every call, never cached, so readiness comes back with the service.
        readiness = await check_readiness.execute()
        return Response(readiness.checks, status_code=200 if readiness.ready else 503)
