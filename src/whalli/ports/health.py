"""Health probing of a backing service (database, cache, object store)."""

from __future__ import annotations

from typing import Protocol


class HealthProbe(Protocol):
    """One backing service that readiness depends on."""

    name: str

    async def check(self) -> None:
        """Return when the service answers a trivial request within a short timeout.

        Raises ``ServiceUnavailable`` (with a reason, never a credential) otherwise.
        """
        ...
