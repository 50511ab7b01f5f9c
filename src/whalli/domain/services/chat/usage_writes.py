"""Writing what a reply used, through a database that may blink."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from whalli.domain.model.errors import Conflict, ServiceUnavailable, UserNotFound
from whalli.ports.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

# Writes a caller stopped waiting for, still running (kept here, or the loop may collect them)
_DETACHED: set[asyncio.Task[None]] = set()

# What the reply paths (chat replies, /v1 completions) use unless configured otherwise.
ATTEMPTS = 4
BACKOFF_S = 0.5


async def write_usage_retrying(
    uow: UnitOfWork,
    write: Callable[[UnitOfWork], Awaitable[None]],
    *,
    attempts: int,
    backoff_s: float,
) -> None:
    """Run ``write`` (one statement that inserts a usage record by its id) autocommitted: no
    transaction round trips. While the database does not answer it is tried again, ``attempts``
    times in all, waiting ``backoff_s`` and then twice as long each time.

    When a retry finds the record's id taken (``Conflict``), the attempt whose answer was lost
    had written everything: the write is done, and the usage counted once. The last
    ``ServiceUnavailable`` is raised. When the user is gone (``UserNotFound``: their account
    was deleted while the reply was generated), there is nobody to charge: nothing is written,
    which is logged, and the write is done (the reply's own job ends quietly)."""
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            async with uow.autocommit() as writing:
                await write(writing)
            return
        except Conflict:
            if attempt == 1:
                raise
            return
        except UserNotFound:
            log.info("usage not recorded: its account was deleted meanwhile")
            return
        except ServiceUnavailable as e:
            if attempt == attempts:
                raise
            log.warning("usage write failed (attempt %d), retrying: %s", attempt, e)
        await asyncio.sleep(delay)
        delay *= 2


async def unstoppable(work: Coroutine[Any, Any, None]) -> None:
    """Await ``work`` in a task that the caller's cancellation (a client leaving) does not
    cancel: what was paid for is recorded whatever happens to the request. Cancelled, the
    caller stops waiting at once and ``work`` goes on to its end (its failure is then logged,
    nobody being left to tell)."""
    task = asyncio.ensure_future(work)
    _DETACHED.add(task)
    task.add_done_callback(_settled)
    await asyncio.shield(task)


def _settled(task: asyncio.Task[None]) -> None:
    _DETACHED.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.warning("A usage record was not written: %r", task.exception())
