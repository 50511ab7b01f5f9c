"""A drain period before shutdown, so a rolling deploy loses no request.

On SIGTERM uvicorn closes its listening socket at once: a load balancer still routing to the
process (Traefik checks readiness every few seconds) meets refused connections (502s) until
its next check. With a drain period (``WHALLI_SHUTDOWN_DRAIN_S``), the first SIGTERM only marks
the process draining: ``/api/health/ready`` answers 503 (so the balancer takes it out of its
pool) while every request is still served; once the period is over, the server's own handler
runs and the usual shutdown follows (open streams and running replies get their grace).

A second SIGTERM, and SIGINT (Ctrl-C), stop at once as before. Without a period nothing is
wrapped.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class ShutdownDrain:
    def __init__(self, delay_s: float = 0.0) -> None:
        self._delay = delay_s
        self._draining = False
        self._server_handler: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def draining(self) -> bool:
        return self._draining

    def begin(self) -> None:
        """From now on the process is draining (readiness answers 503)."""
        if not self._draining:
            self._draining = True
            log.info("shutdown_draining", seconds=self._delay)

    def install(self) -> None:
        """Wrap the SIGTERM handler the server installed (uvicorn sets its own before the
        app's start-up hooks run, and restores the original after shutdown). Call it from a
        start-up hook, on the event loop's (main) thread."""
        if self._delay <= 0 or threading.current_thread() is not threading.main_thread():
            return
        handler = signal.getsignal(signal.SIGTERM)
        if not callable(handler):
            return  # no server handler to defer to (SIG_DFL / SIG_IGN): leave it alone
        self._server_handler = handler
        self._loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, self._on_term)

    def _on_term(self, sig: int, frame: FrameType | None) -> None:
        loop = self._loop
        if self._draining or loop is None or loop.is_closed():
            self._server_handler(sig, frame)  # asked again: stop now
            return
        self.begin()
        # A signal handler may interrupt the loop anywhere: hand over through its thread-safe
        # entry, and let the loop time the period.
        loop.call_soon_threadsafe(loop.call_later, self._delay, self._stop, sig)

    def _stop(self, sig: int) -> None:
        log.info("shutdown_drained")
        self._server_handler(sig, None)
