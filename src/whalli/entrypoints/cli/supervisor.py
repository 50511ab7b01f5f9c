"""``whalli serve`` under uvicorn, with worker processes that hear every stop signal.

With ``--workers N`` uvicorn's supervisor passes the first SIGTERM or SIGINT on to its workers
and then ignores any other while they stop. A worker draining (``WHALLI_SHUTDOWN_DRAIN_S``)
would then drain its whole period even when the operator asks again to stop now, as the README
says a second signal does. ``ForwardingSupervisor`` passes each later one on too.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any

from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

_STOPS = (signal.SIGTERM, signal.SIGINT)
_JOIN_SLICE_S = 0.25


class ForwardingSupervisor(Multiprocess):
    def join_all(self) -> None:
        """Wait for the workers, passing on every stop signal received meanwhile."""
        while any(worker.process.is_alive() for worker in self.processes):
            for worker in self.processes:
                worker.process.join(_JOIN_SLICE_S / max(1, len(self.processes)))
            received, self.signal_queue[:] = list(self.signal_queue), []
            if any(sig in _STOPS for sig in received):
                self.terminate_all()


def run_server(app: str, **options: Any) -> None:
    """What ``uvicorn.run`` does for an import string (no reload), with that supervisor."""
    config = Config(app, **options)
    if config.workers > 1:
        ForwardingSupervisor(config, sockets=[config.bind_socket()]).run()
        return
    server = Server(config=config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
