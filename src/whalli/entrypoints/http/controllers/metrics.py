"""Prometheus scrape endpoint, optionally behind a bearer token."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency

from whalli.adapters.prometheus.metrics import render_metrics, scrape_allowed
from whalli.config import Settings
from whalli.domain.model.errors import Unauthenticated
from whalli.entrypoints.http.rate_limit import charge_refused_credential
from whalli.entrypoints.http.security import PUBLIC


def _authorized(request: Request[Any, Any, Any], settings: Settings) -> bool:
    token = settings.metrics_token.reveal() if settings.metrics_token else None
    return scrape_allowed(request.headers.get("authorization", ""), token)


class MetricsController(Controller):
    path = "/api/metrics"
    include_in_schema = False
    # Guarded by its own scrape token (WHALLI_METRICS_TOKEN): the scraper is never refused, a
    # wrong or missing token is counted against the caller's IP budget (then 429).
    opt = {**PUBLIC, "rate_limit": False}

    @get("/", media_type="text/plain")
    async def metrics(
        self, request: Request[Any, Any, Any], settings: NamedDependency[Settings]
    ) -> Response[bytes]:
        if not _authorized(request, settings):
            await charge_refused_credential(request)
            raise Unauthenticated("A valid metrics token is required.")
        # In a thread: with several processes, rendering reads every process's metric files.
        body, content_type = await anyio.to_thread.run_sync(render_metrics)
        # Sent as given: prometheus_client's type already names its charset, and Litestar would
        # append a second one to a text/* media_type, which Prometheus 3 refuses to parse.
        return Response(body, headers={"content-type": content_type})
