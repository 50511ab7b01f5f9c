"""The short-lived streaming session opened by ``POST /api/chat/start``."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from uuid import UUID

from whalli.domain.model.base import Value
from whalli.domain.model.chats import GenerationParams
from whalli.domain.model.principal import CredentialId

DEFAULT_SESSION_TTL = timedelta(minutes=10)
# How long a reader pass handed out with a chat read admits its holder (see ``StreamPass``).
STREAM_PASS_TTL = timedelta(minutes=10)


# This API process, as a session names the process that read its user (the one whose clock took
# ``user_read_at``): a time is compared only with the clock that took it.
THIS_PROCESS = secrets.token_hex(8)


class ChatSession(Value, frozen=True, kw_only=True):
    """Bound to one user and one pending assistant reply; its id is the stream's credential.

    The id is an unguessable token (>= 256 random bits), so holding it is enough for a browser
    ``EventSource`` that cannot send headers; it expires after ``DEFAULT_SESSION_TTL``.
    ``reply_message_id`` names the reply it streams, so a reader of the chat can find the
    session of a reply still being generated; ``None`` in sessions stored before it existed
    (every field added later has a default, so those still decode). ``credential`` is the
    login session or API key its start was authenticated by: the id alone admits its holder
    only while that credential is still in force (see ``AttachStreamHandler``).
    """

    id: str
    user_id: UUID
    chat_id: UUID
    project_id: UUID
    user_message_id: UUID
    reply_message_id: UUID | None = None
    model: str
    params: GenerationParams = GenerationParams()
    use_cache: bool = True
    attachment_ids: tuple[UUID, ...] = ()
    created_at: datetime
    expires_at: datetime
    # When its start (or regeneration) read its user fresh, by the clock of the process named
    # by ``user_read_by`` (``THIS_PROCESS`` there); None: not known (stored before they existed)
    user_read_at: datetime | None = None
    user_read_by: str | None = None
    credential: CredentialId = CredentialId()  # not known: stored before it was recorded

    @classmethod
    def open(
        cls,
        *,
        id: str,
        user_id: UUID,
        chat_id: UUID,
        project_id: UUID,
        user_message_id: UUID,
        model: str,
        now: datetime,
        params: GenerationParams | None = None,
        use_cache: bool = True,
        attachment_ids: tuple[UUID, ...] = (),
        ttl: timedelta = DEFAULT_SESSION_TTL,
        reply_message_id: UUID | None = None,
        user_read_at: datetime | None = None,
        process: str = THIS_PROCESS,
        credential: CredentialId | None = None,
    ) -> ChatSession:
        """``user_read_at``: when this process (``process``) read the user, if it did."""
        if len(id) < 32:
            raise ValueError("a chat session id must be an unguessable token")
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        return cls(
            id=id,
            user_id=user_id,
            chat_id=chat_id,
            project_id=project_id,
            user_message_id=user_message_id,
            reply_message_id=reply_message_id,
            model=model,
            params=params or GenerationParams(),
            use_cache=use_cache,
            attachment_ids=attachment_ids,
            created_at=now,
            expires_at=now + ttl,
            user_read_at=user_read_at,
            user_read_by=None if user_read_at is None else process,
            credential=credential or CredentialId(),
        )

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def ttl_seconds(self, now: datetime) -> int:
        return max(0, int((self.expires_at - now).total_seconds()))


class StreamPass(Value, frozen=True, kw_only=True):
    """A reply still being generated, bound to one reader for a short while (``STREAM_PASS_TTL``).

    A chat read shows each reply still being generated as a pass for the caller, never as its
    session id: the id alone admits its holder, so one shown to a member would stay a
    credential after the member is removed. A pass names the reply (not a secret), admits only
    the reader it names, and only while that reader may still read the chat and the credential
    they read it with (``credential``: their login session or API key) is still in force
    (checked again at every attach).
    """

    reply_message_id: UUID
    user_id: UUID
    expires_at: datetime
    credential: CredentialId = CredentialId()
