"""Run a periodic task on the worker's event loop, once per interval across all workers.

Every worker process runs the loop; before each run it claims ``lock_key`` in the shared cache
for one interval (``Cache.add``: Redis ``SET NX EX``), so two workers never sweep at the same
time and the sweep runs about once per interval however many workers there are. A failing run
is logged and tried again at the next tick: the loop only ends when it is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from whalli.ports.cache import Cache

log = logging.getLogger(__name__)


async def run_periodically(
    task: Callable[[], Awaitable[object]],
    cache: Callable[[], Awaitable[Cache]],
    *,
    interval_s: float,
    lock_key: str,
    name: str = "sweep",
) -> None:
    """Every ``interval_s``: claim ``lock_key`` for the interval, then run ``task``."""
    ttl = max(1, math.floor(interval_s))
    while True:
        await asyncio.sleep(interval_s)
        try:
            if await (await cache()).add(lock_key, b"1", ttl):
                await task()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("The periodic %s failed; it runs again in %g s.", name, interval_s)
