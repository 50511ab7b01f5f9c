"""Cost of Whalli's HTTP stack (request id, access log, metrics, problem handling) per request.

Baseline: a bare Litestar app serving the same handler, driven the same way in the same run.
Both apps are called in-process through ASGI (no sockets), so the ratio isolates the stack.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from typing import Any

from litestar import Litestar, get

from whalli.adapters.structlog.logging import configure_logging
from whalli.config import Settings
from whalli.domain.services.check_readiness import CheckReadiness
from whalli.entrypoints.http.app import create_app

REQUESTS = 3000
ROUNDS = 5


class _Container:
    settings = Settings(env="test")

    async def check_readiness(self) -> CheckReadiness:
        return CheckReadiness([])

    async def init_resources(self) -> None:
        return None

    async def shutdown_resources(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        # Use cases the health route never asks for.
        async def unused() -> None:
            raise AssertionError(f"{name} is not used by this benchmark")

        return unused


@get("/api/health", sync_to_thread=False)
def _health() -> dict[str, str]:
    return {"status": "ok"}


async def _drive(app: Any, n: int) -> float:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/health",
        "raw_path": b"/api/health",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 3001),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / n


async def _measure() -> dict[str, float | str]:
    configure_logging("warning", None)  # the access log line is info: measure the stack, not I/O
    bare = Litestar(route_handlers=[_health], logging_config=None)
    whalli = create_app(_Container())
    bare_t, whalli_t = [], []
    for _ in range(ROUNDS):  # interleaved rounds so drift hits both alike
        bare_t.append(await _drive(bare, REQUESTS))
        whalli_t.append(await _drive(whalli, REQUESTS))
    b, w = statistics.median(bare_t), statistics.median(whalli_t)
    return {
        "bare_litestar_us_per_request": round(b * 1e6, 1),
        "whalli_us_per_request": round(w * 1e6, 1),
        "added_us_per_request": round((w - b) * 1e6, 1),
        "ratio_whalli_vs_bare": round(w / b, 2),
    }


def run() -> dict[str, float | str]:
    logging.getLogger().setLevel(logging.WARNING)

    return asyncio.run(_measure())
