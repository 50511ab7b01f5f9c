"""Route each decoded job to the use case that handles its type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from whalli.domain.model.jobs import Job

# A handler receives jobs of the type it is registered for (``RecordPing(...).execute`` for
# ``Ping``); ``Any`` lets such narrower handlers sit in one mapping.
JobHandler = Callable[[Any], Awaitable[None]]


class NoHandlerForJob(LookupError):
    """A job type this worker has no handler for (e.g. sent by a newer release: retry it)."""


class JobDispatcher:
    def __init__(self, handlers: Mapping[type, JobHandler]) -> None:
        for job_type in handlers:
            if not (isinstance(job_type, type) and issubclass(job_type, Job)):
                raise TypeError(f"{job_type!r} is not a job type")
        self._handlers: dict[type, JobHandler] = dict(handlers)

    @property
    def job_types(self) -> frozenset[type]:
        return frozenset(self._handlers)

    async def dispatch(self, job: Job) -> None:
        """Run the handler of ``job``'s type; raises ``NoHandlerForJob`` when there is none."""
        handler = self._handlers.get(type(job))
        if handler is None:
            raise NoHandlerForJob(f"No handler for jobs of type {type(job).__name__}.")
        await handler(job)

    __call__ = dispatch
