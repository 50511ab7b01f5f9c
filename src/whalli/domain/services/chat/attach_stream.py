"""Use case: may this caller read the reply stream of this chat session?"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.chat_sessions import THIS_PROCESS, ChatSession
from whalli.domain.model.errors import ChatSessionNotFound, NotFound
from whalli.domain.services.projects.access import require_role
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.clock import Clock
from whalli.ports.stream_passes import StreamPasses
from whalli.ports.unit_of_work import UnitOfWork

# How long after its start read the user fresh a session's own user attaching by its id relies
# on that read (see ``AttachStreamHandler``): counted from the read (the start's authentication,
# before its body was read or its files waited for), in the process that read it (by its clock).
START_READ_GRACE = timedelta(seconds=2)


class AttachStream(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str  # the session id, or a reader pass for it (``StreamPass``)
    user_id: UUID | None  # None: the id or pass alone is the credential (browser EventSource)


async def resolve(
    value: str, sessions: ChatSessionStore, passes: StreamPasses, clock: Clock
) -> tuple[ChatSession, UUID | None]:
    """The session that ``value`` (a session id or a reader pass) names, and the reader the
    pass names (``None`` for a session id). Raises ``ChatSessionNotFound`` for an unknown or
    expired session, a forged or expired pass, and a pass whose reply has no live session."""
    granted = passes.open(value, clock.now())
    if granted is None:
        return await sessions.get(value), None
    live = await sessions.live_session_ids([granted.reply_message_id])
    session_id = live.get(granted.reply_message_id)
    if session_id is None:
        raise ChatSessionNotFound()
    return await sessions.get(session_id), granted.user_id


def in_own_personal_project(session: ChatSession) -> bool:
    """Whether the session's chat is in its user's personal project, which is always theirs
    (nobody removes its owner): their membership needs no read there."""
    return session.project_id == personal_project_id(session.user_id)


class AttachStreamHandler:
    """Rules:
    - the session id is an unguessable, short-lived token bound to its user, who alone is
      given it (by the start): holding it is enough (an ``EventSource`` cannot send headers);
    - a reader pass (what a chat read shows) admits the reader it names: the session's user,
      or anyone else while they may read the chat's project (so a member removed since is
      refused); a pass shown with another user's credentials admits nobody;
    - an authenticated caller other than the session's user must be able to read the chat's
      project, and so must the session's user, except in their personal project (a member
      removed from a shared project since their start is refused; a personal project is
      always its owner's, so the common case costs no read);
    - whoever is admitted is read fresh at every attach: a disabled or deleted account is
      refused at once (its session id or pass would otherwise admit it until it expires),
      except the session's own user attaching by its id, in their personal project, within
      ``START_READ_GRACE`` of the start's own fresh read of that user (a disabled account was
      refused there), made in this process: the ``EventSource`` a chat app opens right after
      a start is admitted without a second read; a later attach, one in another process, one
      by a pass, and one that reads a membership anyway read the user fresh;
    - everyone else gets ``ChatSessionNotFound`` (404), exactly like an unknown or expired
      session (or a forged or expired pass).
    """

    def __init__(
        self,
        sessions: ChatSessionStore,
        uow: UnitOfWork,
        passes: StreamPasses,
        clock: Clock,
        *,
        process: str = THIS_PROCESS,
    ) -> None:
        self._sessions, self._uow, self._passes, self._clock = sessions, uow, passes, clock
        self._process = process

    async def execute(self, command: AttachStream) -> ChatSession:
        reader = command.user_id  # authenticated just now when set: exists, not disabled
        session, holder = await resolve(
            command.session_id, self._sessions, self._passes, self._clock
        )
        if holder is not None and reader is not None and reader != holder:
            raise ChatSessionNotFound()
        unchecked = reader is None  # only the id or pass vouches for the reader
        reader = reader or holder or session.user_id
        member_checked = reader != session.user_id or not in_own_personal_project(session)
        if not member_checked and (not unchecked or self._read_at_start(session, holder)):
            return session
        try:
            async with self._uow.read_only() as uow:
                if unchecked and (await uow.users.get(reader)).disabled:
                    raise ChatSessionNotFound()
                if member_checked:
                    await require_role(uow, session.project_id, reader, "read")
        except NotFound:
            raise ChatSessionNotFound() from None
        return session

    def _read_at_start(self, session: ChatSession, holder: UUID | None) -> bool:
        """Whether the session's start read its user fresh just now (by its id, not a pass)."""
        if holder is not None or session.user_read_at is None:
            return False
        if session.user_read_by != self._process:
            return False  # read by another process, by its clock: read again here
        return timedelta(0) <= self._clock.now() - session.user_read_at <= START_READ_GRACE
