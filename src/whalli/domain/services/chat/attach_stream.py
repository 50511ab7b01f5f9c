"""Use case: may this caller read the reply stream of this chat session?"""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.errors import ChatSessionNotFound, NotFound
from whalli.domain.services.projects.access import require_role
from whalli.ports.chat_sessions import ChatSessionStore
from whalli.ports.unit_of_work import UnitOfWork


class AttachStream(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    user_id: UUID | None  # None: the session id alone is the credential (browser EventSource)


class AttachStreamHandler:
    """Rules:
    - the session id is an unguessable, short-lived token bound to its user: holding it is
      enough (an ``EventSource`` cannot send headers);
    - an authenticated caller other than the session's user must be able to read the chat's
      project, read fresh; anyone else gets ``ChatSessionNotFound`` (404), exactly like an
      unknown or expired session.
    """

    def __init__(self, sessions: ChatSessionStore, uow: UnitOfWork) -> None:
        self._sessions, self._uow = sessions, uow

    async def execute(self, command: AttachStream) -> ChatSession:
        session = await self._sessions.get(command.session_id)
        if command.user_id is None or command.user_id == session.user_id:
            return session
        try:
            async with self._uow as uow:
                await require_role(uow, session.project_id, command.user_id, "read")
        except NotFound:
            raise ChatSessionNotFound() from None
        return session
