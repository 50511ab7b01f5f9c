"""Public read-only links to a snapshot of a chat.

The link's token is shown once, when the link is made; only its SHA-256 is stored (as for API
keys), so a copy of the database opens no link. The snapshot is a copy of what the link shows,
made with it: the chat's title and the messages finished (complete, stopped or failed) then, in
the chat's order, each with its role, text, model, time and status, and a reasoning model's
thinking as the chat shows it. Later messages, a reply
still being generated then, and later edits, renames or regenerations never show through (to
change what a link shows, revoke it and share again). A link may expire (``expires_at``): from
then on it opens nothing, as if revoked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from whalli.domain.model.base import Entity, Value
from whalli.domain.model.chats import Message, MessageRole, MessageStatus
from whalli.domain.model.errors import ShareTooLarge
from whalli.domain.model.expiry import check_expiry, in_force

MAX_LIVE_SHARES = 20  # live (not revoked) links per chat
SHARE_TOKEN_BYTES = 32  # random bytes in a link's token: 256 bits
SHARED_PATH = "/api/shared/"  # a link is SHARED_PATH + token
SHARE_MAX_LIFETIME = timedelta(days=365)  # an expiry further away is refused (or none at all)
# The text a snapshot may copy, in all (a chat longer than this is not shared by link).
SHARE_MAX_CHARS = 2_000_000


def hash_share_token(token: str) -> str:
    """SHA-256 hex: the token is 256 random bits, so a fast digest is safe and indexable."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SharedMessage(Value, frozen=True, kw_only=True):
    """A message as a link shows it: never who wrote it, its costs, usage or error."""

    role: MessageRole
    content: str
    model: str | None
    created_at: datetime
    status: MessageStatus  # a reply stopped (aborted) or failed says so; never why
    # a reasoning model's thinking before its answer ("" when none, and in links made before
    # links showed it)
    reasoning: str = ""


def snapshot_of(messages: Sequence[Message]) -> tuple[SharedMessage, ...]:
    """What a link made now shows: the finished messages, never the system's, nor a failed
    reply with no text (it would show as an empty answer). Raises ``ShareTooLarge`` past
    ``SHARE_MAX_CHARS`` of text."""
    shown = tuple(_copy(m) for m in messages if shown_in_link(m))
    chars = sum(len(m.content) + len(m.reasoning) for m in shown)
    if chars > SHARE_MAX_CHARS:
        raise ShareTooLarge(
            f"This chat is too long to share by link ({chars:,} characters; at most "
            f"{SHARE_MAX_CHARS:,}).",
            limit=SHARE_MAX_CHARS,
        )
    return shown


def _copy(m: Message) -> SharedMessage:
    return SharedMessage(
        role=m.role,
        content=m.content,
        model=m.model,
        created_at=m.created_at,
        status=m.status,
        reasoning=m.reasoning,
    )


def shown_in_link(message: Message) -> bool:
    """Whether a link may show ``message`` (the rule of ``snapshot_of``)."""
    if not message.status.is_final or message.role is MessageRole.SYSTEM:
        return False
    return message.status is not MessageStatus.FAILED or bool(message.content)


class ChatShare(Entity, kw_only=True):
    id: UUID
    chat_id: UUID
    created_by: UUID
    token_hash: str
    title: str  # the chat's when the link was made
    messages: tuple[SharedMessage, ...]  # the snapshot (see ``snapshot_of``)
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = None  # None: until revoked

    @classmethod
    def create(
        cls, *, id: UUID, chat_id: UUID, created_by: UUID, token: str, title: str,
        messages: Sequence[Message], now: datetime, expires_at: datetime | None = None,
    ) -> ChatShare:  # fmt: skip
        """Raises ``InvalidInput`` (``expiresAt``) for an expiry without a UTC offset, not in
        the future, or more than ``SHARE_MAX_LIFETIME`` away, and ``ShareTooLarge``."""
        check_expiry(expires_at, now, SHARE_MAX_LIFETIME, "a link")
        if len(token) < 43:  # token_urlsafe(32) is 43 characters
            raise ValueError("a share token must carry at least 256 random bits")
        return cls(
            id=id, chat_id=chat_id, created_by=created_by, token_hash=hash_share_token(token),
            title=title, messages=snapshot_of(messages), created_at=now, expires_at=expires_at,
        )  # fmt: skip

    @property
    def message_count(self) -> int:
        return len(self.messages)

    @property
    def is_live(self) -> bool:
        """Not revoked (it may have expired: see ``opens_at``)."""
        return self.revoked_at is None

    def opens_at(self, now: datetime) -> bool:
        """Whether the link shows its chat at ``now``: not revoked, not expired."""
        return in_force(self.expires_at, self.revoked_at, now)

    def revoke(self, now: datetime) -> None:
        if self.revoked_at is None:
            self.revoked_at = now
