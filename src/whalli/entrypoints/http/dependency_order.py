"""Route dependencies resolved one after another, on the request's own task.

Litestar resolves a handler's independent dependencies (``principal`` and a use case, say)
concurrently: each batch of more than one goes through an anyio task group, which spawns a
task per dependency and waits for them. Ours are quick lookups (the request's principal, a
handler from the container), with no I/O to overlap, so the group only costs two turns of the
event loop per request. On a busy loop each turn waits behind everything queued: at 16
concurrent streams (`bench_chat`), the group held a `/v1` completion 3.7 ms at p50 before its
handler ran (a throwaway hook timing Litestar's calls). 53 of the 122 routes had such a batch.

``install()`` swaps ``KwargsModel.resolve_dependencies`` for the same walk without the task
group: batches in order, each dependency of a batch in turn; the first error propagates, as
Litestar re-raises the group's first. It is left alone if Litestar's internals moved.
"""

from __future__ import annotations

from typing import Any

from litestar._kwargs import dependencies as _dependencies
from litestar._kwargs import kwargs_model as _kwargs_model
from litestar._kwargs.cleanup import DependencyCleanupGroup
from litestar.connection import ASGIConnection


async def _resolve_in_turn(
    self: _kwargs_model.KwargsModel,
    connection: ASGIConnection[Any, Any, Any, Any],
    kwargs: dict[str, Any],
) -> DependencyCleanupGroup:
    cleanup_group = DependencyCleanupGroup()
    for batch in self.dependency_batches:
        for dependency in batch:
            await _dependencies.resolve_dependency(dependency, connection, kwargs, cleanup_group)
    return cleanup_group


def install() -> bool:
    """Resolve dependencies in turn from now on; ``False`` if Litestar's internals moved."""
    model = _kwargs_model.KwargsModel
    if (
        not hasattr(model, "resolve_dependencies")
        or not hasattr(_dependencies, "resolve_dependency")
        or "dependency_batches" not in getattr(model, "__slots__", ())
    ):
        return False
    model.resolve_dependencies = _resolve_in_turn  # type: ignore[method-assign]
    return True


def installed() -> bool:
    resolver: object = _kwargs_model.KwargsModel.resolve_dependencies
    return resolver is _resolve_in_turn
