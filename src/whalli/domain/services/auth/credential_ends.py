"""Users this process ended a credential of just now, whom a read-free check must not trust."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from uuid import UUID

# How long an end is remembered: as long as a read made before it is relied on without reading
# again (``attach_stream.START_READ_GRACE``).
REMEMBERED_FOR = timedelta(seconds=2)


class CredentialEnds:
    """When this process last ended a credential of each user (a logout, a logout everywhere,
    a password change, a refresh token's reuse, a revoked key, a disabled or deleted account),
    for ``remembered_for``, at most ``size`` users at once. Each is noted once committed, at
    the clock's time after the commit (``AccessChanges.ended``, which every use case that ends
    a credential calls): a read made while the end was committing is before it.

    It decides nothing by itself: a use case that would rely on a fresh read of the user made
    moments ago (``AttachStreamHandler`` just after a start) asks ``ended_since`` that read and
    reads again when it says yes. An end forgotten early (more than ``size`` users ending a
    credential within ``remembered_for``) makes ``ended_since`` say yes for every read made
    before it: it errs towards a read, never towards trusting one. Ends in other processes are
    not seen here: their window is the one the read-free check documents.
    """

    def __init__(self, remembered_for: timedelta = REMEMBERED_FOR, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._keep, self._size = remembered_for, size
        self._ends: OrderedDict[UUID, datetime] = OrderedDict()  # oldest end first
        self._forgotten: datetime | None = None  # the latest end forgotten before its time

    def ended(self, user_id: UUID, at: datetime) -> None:
        """A credential of ``user_id`` ended at ``at`` (by this process's clock)."""
        self._ends[user_id] = max(at, self._ends.get(user_id, at))
        self._ends.move_to_end(user_id)
        while self._ends:
            oldest_user, oldest = next(iter(self._ends.items()))
            if oldest >= at - self._keep and len(self._ends) <= self._size:
                break
            del self._ends[oldest_user]
            if oldest >= at - self._keep:
                self._forgotten = max(oldest, self._forgotten or oldest)

    def ended_since(self, user_id: UUID, since: datetime) -> bool:
        """Whether a credential of ``user_id`` may have ended at or after ``since``."""
        if self._forgotten is not None and self._forgotten >= since:
            return True
        end = self._ends.get(user_id)
        return end is not None and end >= since
