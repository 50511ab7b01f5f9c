"""Use case: may this caller read the reply stream of this chat session?"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import msgspec

from whalli.domain.model.chat_sessions import THIS_PROCESS, ChatSession
from whalli.domain.model.errors import ChatSessionNotFound, NotFound
from whalli.domain.model.principal import CredentialId
from whalli.domain.services.auth.credential_ends import CredentialEnds
from whalli.domain.services.projects.access import require_role
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.clock import Clock
from whalli.ports.stream_passes import StreamPasses
from whalli.ports.unit_of_work import UnitOfWork

# How long after its start read the user fresh a session's own user attaching by its id relies
# on that read (see ``AttachStreamHandler``): counted from the read (the start's authentication,
# before its body was read or its files waited for), in the process that read it (by its clock).
# A credential ended within it by another process (a logout, a revoked key) is not seen by such
# an attach; one ended by this process is (``CredentialEnds``, remembered at least this long).
START_READ_GRACE = timedelta(seconds=2)


class AttachStream(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str  # the session id, or a reader pass for it (``StreamPass``)
    user_id: UUID | None  # None: the id or pass alone is the credential (browser EventSource)


class Holder(msgspec.Struct, frozen=True, kw_only=True):
    """The reader a pass names and the credential they read the chat with."""

    user_id: UUID
    credential: CredentialId


async def resolve(
    value: str, sessions: ChatSessionStore, passes: StreamPasses, clock: Clock
) -> tuple[ChatSession, Holder | None]:
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
    holder = Holder(user_id=granted.user_id, credential=granted.credential)
    return await sessions.get(session_id), holder


async def still_admitted(
    uow: UnitOfWork, user_id: UUID, credential: CredentialId, clock: Clock
) -> bool:
    """Whether ``user_id`` is not disabled and ``credential`` (theirs) is still in force: the
    login session active, the API key neither revoked nor expired. One read, the user with it;
    a credential not known (recorded before it was) checks the user alone."""
    now = clock.now()
    if credential.login_session_id is not None:
        found = await uow.users.find_with_session(user_id, credential.login_session_id, now)
        return found is not None and found[1] and not found[0].disabled
    if credential.api_key_id is not None:
        keyed = await uow.api_keys.get_with_user(credential.api_key_id)
        if keyed is None:
            return False
        key, user = keyed
        return key.user_id == user_id and key.is_active(now) and not user.disabled
    return not (await uow.users.get(user_id)).disabled


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
      refused at once (its session id or pass would otherwise admit it until it expires);
      so is an id or pass alone once the credential it was handed out under has ended (the
      start's login session or API key for an id, the chat read's for a pass: a logout, a
      logout everywhere, a password change, a revoked or expired key), read in the same one
      query as the user (``still_admitted``);
    - except the session's own user attaching by its id, in their personal project, within
      ``START_READ_GRACE`` of the start's own fresh read of that user (a disabled account or
      an ended credential was refused there), made in this process, unless this process has
      ended a credential of that user since (``CredentialEnds``): the ``EventSource`` a chat
      app opens right after a start is admitted without a second read, so only a credential
      ended (or an account disabled) by another process within those 2 s is not seen by it;
      a later attach, one in another process, one by a pass, and one that reads a membership
      anyway read the user fresh;
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
        ends: CredentialEnds | None = None,
    ) -> None:
        self._sessions, self._uow, self._passes, self._clock = sessions, uow, passes, clock
        self._process, self._ends = process, ends

    async def execute(self, command: AttachStream) -> ChatSession:
        reader = command.user_id  # authenticated just now when set: exists, not disabled
        session, holder = await resolve(
            command.session_id, self._sessions, self._passes, self._clock
        )
        if holder is not None and reader is not None and reader != holder.user_id:
            raise ChatSessionNotFound()
        unchecked = reader is None  # only the id or pass vouches for the reader
        credential = session.credential if holder is None else holder.credential
        reader = reader or (holder.user_id if holder else session.user_id)
        member_checked = reader != session.user_id or not in_own_personal_project(session)
        if not member_checked and (not unchecked or self._read_at_start(session, holder)):
            return session
        try:
            async with self._uow.read_only() as uow:
                if unchecked and not await still_admitted(uow, reader, credential, self._clock):
                    raise ChatSessionNotFound()
                if member_checked:
                    await require_role(uow, session.project_id, reader, "read")
        except NotFound:
            raise ChatSessionNotFound() from None
        return session

    def _read_at_start(self, session: ChatSession, holder: Holder | None) -> bool:
        """Whether the session's start read its user fresh just now (by its id, not a pass)."""
        if holder is not None or session.user_read_at is None:
            return False
        if session.user_read_by != self._process:
            return False  # read by another process, by its clock: read again here
        read_at = session.user_read_at
        if self._ends is not None and self._ends.ended_since(session.user_id, read_at):
            return False  # this process ended a credential of theirs since: read again
        return timedelta(0) <= self._clock.now() - read_at <= START_READ_GRACE
