"""Builders of valid domain entities with fresh ids, for the repository and unit of work tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from whalli.domain.model.attachments import Attachment
from whalli.domain.model.chats import Chat, Message
from whalli.domain.model.notifications import Notification
from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.domain.model.searches import SearchResult, SearchSubscription, fingerprint
from whalli.domain.model.tokens import RefreshToken
from whalli.domain.model.transcriptions import Transcription
from whalli.domain.model.users import User
from whalli.ports.unit_of_work import UnitOfWork

NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def a_user(**changes: object) -> User:
    user_id = uuid.uuid4()
    user = User.create(id=user_id, email=f"user-{user_id.hex}@example.com", now=NOW, name="Ada")
    for name, value in changes.items():
        setattr(user, name, value)
    return user


def a_project(owner: User, *, now: datetime = NOW) -> Project:
    return Project.create(id=uuid.uuid4(), name="Research", owner_id=owner.id, now=now)


def a_membership(project: Project, user: User, role: MemberRole = MemberRole.EDITOR) -> Membership:
    return Membership(project_id=project.id, user_id=user.id, role=role, created_at=NOW)


def a_chat(project: Project, user: User, *, now: datetime = NOW) -> Chat:
    return Chat.start(
        id=uuid.uuid4(), project_id=project.id, user_id=user.id, first_message="Hi", now=now
    )


def a_message(chat: Chat, *, now: datetime = NOW, content: str = "Hello") -> Message:
    return Message.from_user(id=uuid.uuid4(), chat_id=chat.id, content=content, now=now)


def an_attachment(project: Project, user: User, *, now: datetime = NOW) -> Attachment:
    attachment_id = uuid.uuid4()
    return Attachment(
        id=attachment_id, project_id=project.id, user_id=user.id,
        object_key=Attachment.key_for(project.id, attachment_id), filename="report.pdf",
        content_type="application/pdf", size_bytes=1234, sha256="ab" * 32,
        created_at=now, updated_at=now,
    )  # fmt: skip


def a_transcription(attachment: Attachment, user: User, chat: Chat | None = None) -> Transcription:
    return Transcription(
        id=uuid.uuid4(), attachment_id=attachment.id, user_id=user.id,
        chat_id=None if chat is None else chat.id, created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def a_subscription(
    project: Project, user: User, *, now: datetime = NOW, interval: int = 60
) -> SearchSubscription:
    return SearchSubscription.create(
        id=uuid.uuid4(), user_id=user.id, project_id=project.id, query="postgres news",
        interval_minutes=interval, now=now,
    )  # fmt: skip


def a_result(
    subscription: SearchSubscription, url: str, *, found_at: datetime = NOW
) -> SearchResult:
    return SearchResult(
        id=uuid.uuid4(), subscription_id=subscription.id, url=url, title=f"About {url}",
        snippet="…", fingerprint=fingerprint(url), found_at=found_at,
    )  # fmt: skip


def a_refresh_token(user: User, *, ttl_days: int = 30) -> RefreshToken:
    """The first token of a new session (refresh-token family) of ``user``."""
    return RefreshToken.issue(
        id=uuid.uuid4(), user_id=user.id, family_id=uuid.uuid4(), secret=uuid.uuid4().hex * 2,
        now=NOW, ttl=timedelta(days=ttl_days),
    )  # fmt: skip


def a_notification(user: User, *, now: datetime = NOW) -> Notification:
    return Notification(
        id=uuid.uuid4(), user_id=user.id, kind="search_results", title="3 new results",
        body="See what changed.", link="/searches/1", created_at=now,
    )  # fmt: skip


@dataclass
class World:
    """A user who owns a project with a chat in it: the parents most rows need."""

    user: User
    project: Project
    chat: Chat


async def add_world(uow: UnitOfWork) -> World:
    """Store a user, a project with its owner membership and a chat (the caller commits)."""
    user = a_user()
    project = a_project(user)
    chat = a_chat(project, user)
    await uow.users.add(user)
    await uow.projects.add(project)
    await uow.projects.add_member(a_membership(project, user, MemberRole.OWNER))
    await uow.chats.add(chat)
    return World(user, project, chat)


async def committed_world(uow: UnitOfWork) -> World:
    async with uow:
        world = await add_world(uow)
        await uow.commit()
    return world
