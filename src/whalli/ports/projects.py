"""Storage of projects and their memberships."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from whalli.domain.model.projects import Membership, Project


class ProjectRepository(Protocol):
    async def add(self, project: Project) -> None: ...

    async def get(self, project_id: UUID) -> Project:
        """Raises ``ProjectNotFound``."""
        ...

    async def get_for_update(self, project_id: UUID) -> Project:
        """Like ``get``, and lock the project until the unit of work ends.

        Membership changes take this lock first, so that two concurrent changes cannot both see
        "another owner is left" and leave the project without one. Raises ``ProjectNotFound``.
        """
        ...

    async def update(self, project: Project) -> None:
        """Raises ``ProjectNotFound``."""
        ...

    async def delete(self, project_id: UUID) -> None:
        """Delete the project and everything in it. Raises ``ProjectNotFound``."""
        ...

    async def list_for_user(self, user_id: UUID) -> list[Project]:
        """Projects the user is a member of, oldest first."""
        ...

    async def list_owned(self, owner_id: UUID) -> list[Project]:
        """Projects whose ``owner_id`` is the user (personal or not), oldest first."""
        ...

    async def add_member(self, membership: Membership) -> None:
        """Raises ``AlreadyMember``."""
        ...

    async def get_membership(self, project_id: UUID, user_id: UUID) -> Membership | None: ...

    async def update_member(self, membership: Membership) -> None:
        """Raises ``MembershipNotFound``."""
        ...

    async def remove_member(self, project_id: UUID, user_id: UUID) -> None:
        """Raises ``MembershipNotFound``."""
        ...

    async def list_members(self, project_id: UUID) -> list[Membership]: ...
