"""Background generation in the API process: replies outlive the request that started them.

Tokens go to the session's reply stream, so any API process can serve the SSE clients; this
process only runs the generation. On shutdown running generations get a grace period to finish
(their answers are saved), then they are stopped as a user's stop would (saved ``aborted`` with
their text so far and its usage, their readers told), and those that still run are cancelled
(ended ``failed`` by the generation itself, see ``GenerateReplyHandler.execute``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

_STOP_WAIT_S = 5.0  # for stopped replies to be saved, before what still runs is cancelled


class GenerationSupervisor:
    def __init__(self, grace_seconds: float = 20.0) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._grace = grace_seconds

    def launch(self, session_id: str, run: Callable[[], Awaitable[object]]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(
            self._guarded(session_id, run), name=f"reply-{session_id[:8]}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _guarded(session_id: str, run: Callable[[], Awaitable[object]]) -> None:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("generation_failed", session=session_id[:8])

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def shutdown(self, stop_all: Callable[[], object] | None = None) -> None:
        """``stop_all`` stops every reply being generated (the process's ``StopBoard``)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self._grace)
        if pending and stop_all is not None:
            log.warning("generations_stopped_at_shutdown", replies=len(pending))
            stop_all()
            _, pending = await asyncio.wait(pending, timeout=_STOP_WAIT_S)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
