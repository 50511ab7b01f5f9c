"""Route each decoded job to the use case that handles its type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from whalli.domain.model.jobs import Job, JobAbandoned

# A handler receives jobs of the type it is registered for (``RecordPing(...).execute`` for
# ``Ping``); ``Any`` lets such narrower handlers sit in one mapping.
JobHandler = Callable[[Any], Awaitable[None]]
AbandonedHandler = Callable[[JobAbandoned], Awaitable[None]]


class NoHandlerForJob(LookupError):
    """A job type this worker has no handler for (e.g. sent by a newer release: retry it)."""


class JobDispatcher:
    """``handlers`` run jobs by type; ``abandoned`` (by job type too) is told when the queue
    gave up on a job for good, for the types whose entity should show it."""

    def __init__(
        self,
        handlers: Mapping[type, JobHandler],
        abandoned: Mapping[type, AbandonedHandler] | None = None,
    ) -> None:
        for job_type in [*handlers, *(abandoned or {})]:
            if not (isinstance(job_type, type) and issubclass(job_type, Job)):
                raise TypeError(f"{job_type!r} is not a job type")
        self._handlers: dict[type, JobHandler] = dict(handlers)
        self._abandoned: dict[type, AbandonedHandler] = dict(abandoned or {})

    @property
    def job_types(self) -> frozenset[type]:
        return frozenset(self._handlers)

    async def dispatch(self, job: Job) -> None:
        """Run the handler of ``job``'s type; raises ``NoHandlerForJob`` when there is none."""
        handler = self._handlers.get(type(job))
        if handler is None:
            raise NoHandlerForJob(f"No handler for jobs of type {type(job).__name__}.")
        await handler(job)

    async def abandoned(self, abandoned: JobAbandoned) -> None:
        """Tell the job's type that the queue gave up on it; nothing for most types."""
        handler = self._abandoned.get(type(abandoned.job))
        if handler is not None:
            await handler(abandoned)

    __call__ = dispatch
