"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from whalli.domain.services.check_readiness import CheckReadiness
from whalli.entrypoints.http.deps import AppContainer
from whalli.entrypoints.http.schemas import HealthStatus
from whalli.entrypoints.http.security import CONTAINER_STATE_KEY, PUBLIC

# what readiness says while the process drains before shutdown (``WHALLI_SHUTDOWN_DRAIN_S``)
DRAINING = {"api": "draining: this process is shutting down"}


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
        description='200 or 503 with one key per service: "ok" or why it failed. While the '
        'process drains before shutdown: 503 `{"api": "draining: ..."}`, every other route '
        "still served.",
        responses={
            503: ResponseSpec(
                data_container=dict[str, str],
                description="At least one backing service failed, or the process drains",
                generate_examples=False,
            )
        },
    )
    async def ready(
        self, request: Request[Any, Any, Any], check_readiness: NamedDependency[CheckReadiness]
    ) -> Response[dict[str, str]]:
        container: AppContainer = request.app.state[CONTAINER_STATE_KEY]
        if container.drain.draining:
            return Response(DRAINING, status_code=503)
        # Probed on every call, never cached, so readiness comes back with the service.
        readiness = await check_readiness.execute()
        return Response(readiness.checks, status_code=200 if readiness.ready else 503)
