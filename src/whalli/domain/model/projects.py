"""Projects and their members; the permission policy every resource check goes through."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from whalli.domain.model.base import Entity, Value
from whalli.domain.model.chats import clean_name


class MemberRole(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"

    def can_read(self) -> bool:
        return True

    def can_write(self) -> bool:
        return self in (MemberRole.OWNER, MemberRole.EDITOR)

    def can_manage(self) -> bool:
        """Manage members, rename and delete the project."""
        return self is MemberRole.OWNER


class Project(Entity, kw_only=True):
    id: UUID
    name: str
    owner_id: UUID
    personal: bool = False
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(
        cls, *, id: UUID, name: str, owner_id: UUID, now: datetime, personal: bool = False
    ) -> Project:
        return cls(
            id=id,
            name=validate_project_name(name),
            owner_id=owner_id,
            personal=personal,
            created_at=now,
            updated_at=now,
        )

    def rename(self, name: str, now: datetime) -> None:
        self.name = validate_project_name(name)
        self.updated_at = now


def validate_project_name(name: str) -> str:
    """Whitespace folded; 1 to 120 characters, no control character (``chats.clean_name``)."""
    return clean_name(name, limit=120, field="name", what="A project name")


class Membership(Value, frozen=True, kw_only=True):
    project_id: UUID
    user_id: UUID
    role: MemberRole
    created_at: datetime
