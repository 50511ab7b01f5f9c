"""Stopping the replies of a chat (or project, or account) being deleted, or of an account being
disabled, once that is committed."""

from __future__ import annotations

import logging
from collections.abc import Collection
from uuid import UUID

from whalli.domain.model.errors import ChatSessionNotFound
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
    - a reply whose message still exists (a disabled account's) ends ``aborted`` with the text
      it had, as a stop leaves it, its readers given that end;
    - no replies, no round trip: one for the sessions, then one per live session.
    """

    def __init__(self, sessions: ChatSessionStore, stream: ReplyStream) -> None:
        self._sessions, self._stream = sessions, stream

    async def stop(
        self, reply_ids: Collection[UUID], *, of: str, started_by: UUID | None = None
    ) -> None:
        """``of`` names what was deleted (or disabled), for the log. With ``started_by``, only
        the replies that user's sessions generate are stopped (one more round trip a live
        session, to read whose it is): a disabled account's, not its project's other members'."""
        if not reply_ids:
            return
        try:
            live = await self._sessions.live_session_ids(reply_ids)
            for session_id in live.values():
                if started_by is not None and not await self._started_by(session_id, started_by):
                    continue
                await self._stream.request_stop(session_id, STOP_FLAG_TTL_SECONDS)
        except Exception:
            log.warning("The replies of %s were not all asked to stop.", of, exc_info=True)

    async def _started_by(self, session_id: str, user_id: UUID) -> bool:
        try:
            return (await self._sessions.get(session_id)).user_id == user_id
        except ChatSessionNotFound:  # ended meanwhile: nothing to stop
            return False
