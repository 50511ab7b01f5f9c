"""Projects and memberships, in memory."""

from __future__ import annotations

from uuid import UUID

from whalli.adapters.memory._repository import MemoryRepository
from whalli.domain.model.errors import MembershipNotFound, ProjectNotFound
from whalli.domain.model.projects import Membership, Project
from whalli.ports.projects import ProjectRepository


class InMemoryProjectRepository(MemoryRepository, ProjectRepository):
    async def add(self, project: Project) -> None:
        self._tx().insert("projects", project.id, project)

    async def get(self, project_id: UUID) -> Project:
        project: Project = self._tx().get("projects", project_id, ProjectNotFound)
        return project

    async def get_for_update(self, project_id: UUID) -> Project:
        await self._tx().lock("projects", project_id)
        return await self.get(project_id)

    async def update(self, project: Project) -> None:
        self._tx().replace("projects", project.id, project, ProjectNotFound)

    async def delete(self, project_id: UUID) -> None:
        self._tx().delete("projects", project_id, ProjectNotFound)

    async def list_for_user(self, user_id: UUID) -> list[Project]:
        tx = self._tx()
        ids = {m.project_id for m in tx.select("memberships", lambda m: m.user_id == user_id)}
        found: list[Project] = tx.select("projects", lambda p: p.id in ids)
        return sorted(found, key=lambda p: (p.created_at, p.id))

    async def list_owned(self, owner_id: UUID) -> list[Project]:
        found: list[Project] = self._tx().select("projects", lambda p: p.owner_id == owner_id)
        return sorted(found, key=lambda p: (p.created_at, p.id))

    async def add_member(self, membership: Membership) -> None:
        key = (membership.project_id, membership.user_id)
        self._tx().insert("memberships", key, membership)

    async def get_membership(self, project_id: UUID, user_id: UUID) -> Membership | None:
        found: Membership | None = self._tx().find("memberships", (project_id, user_id))
        return found

    async def update_member(self, membership: Membership) -> None:
        key = (membership.project_id, membership.user_id)
        self._tx().replace("memberships", key, membership, MembershipNotFound)

    async def remove_member(self, project_id: UUID, user_id: UUID) -> None:
        self._tx().delete("memberships", (project_id, user_id), MembershipNotFound)

    async def list_members(self, project_id: UUID) -> list[Membership]:
        found: list[Membership] = self._tx().select(
            "memberships", lambda m: m.project_id == project_id
        )
        return sorted(found, key=lambda m: (m.created_at, m.user_id))
