"""Use case: stop the generation of a session's reply."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.errors import ChatSessionNotFound, NotFound
from whalli.domain.model.replies import INTERRUPTED_MESSAGE
from whalli.domain.services.chat.attach_stream import in_own_personal_project, resolve
from whalli.domain.services.projects.access import Need, require_role
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.clock import Clock
from whalli.ports.reply_stream import ReplyStream
from whalli.ports.stream_passes import StreamPasses
from whalli.ports.unit_of_work import UnitOfWork

STOP_FLAG_TTL_SECONDS = 900
# A session younger than this may not have begun its generation yet (its producer mark is set
# as it begins, moments after the session is made): a stop then only leaves its flag.
ORPHAN_AFTER = timedelta(seconds=2)


class StopGeneration(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str  # the session id, or a reader pass for it (what a chat read shows)
    user_id: UUID


class StopGenerationHandler:
    """Rules:
    - the session's user may stop it while they may still read the chat's project (always, in
      their personal project: no read), and so may a member who can write to it; anyone else
      gets ``ChatSessionNotFound`` (404), a viewer who did not start it ``PermissionDenied``;
      a reader pass (what a chat read shows) names its session here too, for the caller who read
      it only (another caller gets 404, as on the stream), and the caller's own rights decide,
      read fresh (the caller is authenticated by their own credential, just now: what the
      id or pass was handed out under need not still be in force);
    - the request is a flag in the shared store: whichever process generates sees it within its
      poll interval, closes the upstream call and saves the partial reply as ``aborted``;
    - stopping a finished or already stopped reply is harmless;
    - a reply nobody generates any more (its process died: no producer mark, the session older
      than ``ORPHAN_AFTER``) is ended at once, ``failed`` as interrupted with the text it had
      saved, so the chat can go on (a regeneration) without waiting for the reply sweeper.
    """

    def __init__(
        self,
        sessions: ChatSessionStore,
        stream: ReplyStream,
        uow: UnitOfWork,
        passes: StreamPasses,
        clock: Clock,
    ) -> None:
        self._sessions, self._stream, self._uow = sessions, stream, uow
        self._passes, self._clock = passes, clock

    async def execute(self, command: StopGeneration) -> None:
        session, holder = await resolve(
            command.session_id, self._sessions, self._passes, self._clock
        )
        if holder is not None and holder.user_id != command.user_id:
            raise ChatSessionNotFound()  # a pass admits only the caller who read it
        starter = command.user_id == session.user_id
        if not (starter and in_own_personal_project(session)):
            try:
                async with self._uow.read_only() as uow:
                    need: Need = "read" if starter else "write"
                    await require_role(uow, session.project_id, command.user_id, need)
            except NotFound:
                raise ChatSessionNotFound() from None
        await self._stream.request_stop(session.id, STOP_FLAG_TTL_SECONDS)
        reply_id = session.reply_message_id
        if reply_id is None or self._clock.now() - session.created_at < ORPHAN_AFTER:
            return
        if await self._stream.producing(session.id):
            return  # its process sees the flag
        async with self._uow.autocommit() as uow:  # (only a reply not yet ended is changed)
            await uow.chats.fail_reply(reply_id, self._clock.now(), INTERRUPTED_MESSAGE)
