"""Stopping the replies of a chat (or project) being deleted, once its deletion is committed."""

from __future__ import annotations

import logging
from collections.abc import Collection
from uuid import UUID

from whalli.domain.services.chat.stop_generation import STOP_FLAG_TTL_SECONDS
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.reply_stream import ReplyStream

log = logging.getLogger(__name__)


class ReplyStopper:
    """Rules:
    - each reply whose session is still alive is asked to stop as ``StopGeneration`` asks it (a
      flag the generating process sees within its poll interval: it closes the upstream call,
      its final write finds the message gone, records the usage alone and its readers get
      ``chat_deleted`` at once), so a deleted chat's reply is neither generated nor billed to
      its end; a reply with no live session has nobody generating it;
    - best effort: the deletion is committed already, so a store that does not answer is
      logged and the reply ends as it did before (``chat_deleted`` once it is generated);
    - no replies, no round trip: one for the sessions, then one per live session.
    """

    def __init__(self, sessions: ChatSessionStore, stream: ReplyStream) -> None:
        self._sessions, self._stream = sessions, stream

    async def stop(self, reply_ids: Collection[UUID], *, of: str) -> None:
        """``of`` names what was deleted, for the log."""
        if not reply_ids:
            return
        try:
            live = await self._sessions.live_session_ids(reply_ids)
            for session_id in live.values():
                await self._stream.request_stop(session_id, STOP_FLAG_TTL_SECONDS)
        except Exception:
            log.warning("The replies of %s were not all asked to stop.", of, exc_info=True)
