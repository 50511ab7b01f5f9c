"""Reader passes: a chat session id bound to one reader, signed, short-lived."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from whalli.domain.model.chat_sessions import StreamPass


class StreamPasses(Protocol):
    def issue(self, granted: StreamPass) -> str:
        """The pass as an opaque string that fits in a URL query (``sessionId=``) and can
        never be mistaken for a session id."""
        ...

    def open(self, value: str, now: datetime) -> StreamPass | None:
        """The pass ``value`` stands for; ``None`` when ``value`` is not a pass at all (a
        session id itself). Raises ``ChatSessionNotFound`` for a pass that is malformed,
        forged (a signature that does not match) or expired at ``now``, as for an unknown
        session; the error never contains the value."""
        ...
