"""The relational rules of ``migrations/*.sql``, for the in-memory store to enforce.

Foreign keys (with the error a missing parent raises, and whether deleting the parent cascades),
unique columns, and the error a duplicate primary key raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from whalli.domain.model.errors import (
    AlreadyMember,
    AttachmentNotFound,
    ChatNotFound,
    Conflict,
    EmailAlreadyRegistered,
    MessageNotFound,
    ProjectNotFound,
    SearchSubscriptionNotFound,
    UserNotFound,
    WhalliError,
)


@dataclass(frozen=True)
class ForeignKey:
    table: str
    column: str
    parent: str
    missing: type[WhalliError]
    cascade: bool = True
    set_null: bool = False  # ON DELETE SET NULL (takes precedence over cascade)


@dataclass(frozen=True)
class Unique:
    table: str
    columns: tuple[str, ...]
    error: type[WhalliError] = Conflict


TABLES = (
    "users", "projects", "memberships", "chats", "messages", "attachments", "transcriptions",
    "search_subscriptions", "search_results", "notifications",
    "refresh_tokens", "api_keys", "oauth_identities", "usage_records", "message_feedback",
    "chat_shares", "user_custom_instructions", "presets", "reply_versions",
)  # fmt: skip
FOREIGN_KEYS = (
    ForeignKey("projects", "owner_id", "users", UserNotFound, cascade=False),
    ForeignKey("memberships", "project_id", "projects", ProjectNotFound),
    ForeignKey("memberships", "user_id", "users", UserNotFound),
    ForeignKey("chats", "project_id", "projects", ProjectNotFound),
    ForeignKey("chats", "user_id", "users", UserNotFound),
    ForeignKey("messages", "chat_id", "chats", ChatNotFound),
    ForeignKey("attachments", "project_id", "projects", ProjectNotFound),
    ForeignKey("attachments", "user_id", "users", UserNotFound),
    ForeignKey("transcriptions", "attachment_id", "attachments", AttachmentNotFound),
    ForeignKey("transcriptions", "user_id", "users", UserNotFound),
    ForeignKey("transcriptions", "chat_id", "chats", ChatNotFound),
    ForeignKey("transcriptions", "message_id", "messages", MessageNotFound),
    ForeignKey("search_subscriptions", "user_id", "users", UserNotFound),
    ForeignKey("search_subscriptions", "project_id", "projects", ProjectNotFound),
    ForeignKey("search_results", "subscription_id", "search_subscriptions",
               SearchSubscriptionNotFound),
    ForeignKey("notifications", "user_id", "users", UserNotFound),
    ForeignKey("refresh_tokens", "user_id", "users", UserNotFound),
    ForeignKey("api_keys", "user_id", "users", UserNotFound),
    ForeignKey("oauth_identities", "user_id", "users", UserNotFound),
    ForeignKey("usage_records", "user_id", "users", UserNotFound),
    ForeignKey("usage_records", "message_id", "messages", MessageNotFound, set_null=True),
    ForeignKey("message_feedback", "message_id", "messages", MessageNotFound),
    ForeignKey("message_feedback", "user_id", "users", UserNotFound),
    ForeignKey("chat_shares", "chat_id", "chats", ChatNotFound),
    ForeignKey("chat_shares", "created_by", "users", UserNotFound),
    ForeignKey("user_custom_instructions", "user_id", "users", UserNotFound),
    ForeignKey("presets", "user_id", "users", UserNotFound),
    # (messages.answers in Postgres: a reply out of the conversation, and its question)
    ForeignKey("reply_versions", "id", "messages", MessageNotFound),
    ForeignKey("reply_versions", "question_id", "messages", MessageNotFound),
)  # fmt: skip
UNIQUES = (
    Unique("users", ("email",), EmailAlreadyRegistered),
    Unique("attachments", ("object_key",)),
    Unique("search_results", ("subscription_id", "fingerprint")),
    Unique("refresh_tokens", ("token_hash",)),
    Unique("api_keys", ("key_hash",)),
    Unique("chat_shares", ("token_hash",)),
)
DUPLICATE_KEY: dict[str, type[WhalliError]] = {"memberships": AlreadyMember}
