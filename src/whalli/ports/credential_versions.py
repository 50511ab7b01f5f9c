"""A token per user that changes with their credentials, shared by every API process."""

from __future__ import annotations

import asyncio
from typing import Protocol
from uuid import UUID


class CredentialVersions(Protocol):
    """Each user's *credential version*: an opaque token that ``bump`` replaces whenever one of
    their credentials ends or their account changes, so that a process holding what it read
    of them earlier can tell, with one cheap read, whether that is still what the database
    says (``PrincipalCache``).

    A new version never repeats an old one (tokens, not counters), and a user without one is
    given a new one by the read: a store emptied by a restart, or a version forgotten after
    a day, cannot give back a version a reader remembers. ``None`` is no version: it matches
    nothing (the reader trusts nothing it remembers, and remembers nothing).
    """

    def current(self, user_id: UUID) -> asyncio.Future[bytes | None]:
        """The future of the user's version. The read is sent before this returns (when it
        can be), so that it travels beside the caller's other work (the rate limit's count,
        sent just before, in the same round trip). The future fails with
        ``ServiceUnavailable`` when the store cannot tell (the caller then trusts nothing it
        remembers)."""
        ...

    async def bump(self, user_id: UUID) -> None:
        """Give the user a new version (after the change committed). Raises
        ``ServiceUnavailable`` when the store cannot be reached."""
        ...
