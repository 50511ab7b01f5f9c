"""Projects and memberships in Postgres."""

from __future__ import annotations

from typing import LiteralString
from uuid import UUID

import msgspec

from whalli.adapters.postgres._base import (
    PostgresRepository,
    assignments,
    columns,
    placeholders,
)
from whalli.domain.model.errors import AlreadyMember, MembershipNotFound, ProjectNotFound
from whalli.domain.model.projects import Membership, Project
from whalli.ports.projects import ProjectRepository

_COLUMNS = ("id", "name", "owner_id", "personal", "created_at", "updated_at")
_SELECT = f"SELECT {columns(_COLUMNS)} FROM projects"
_INSERT = f"INSERT INTO projects ({columns(_COLUMNS)}) VALUES ({placeholders(_COLUMNS)})"
_UPDATE = f"UPDATE projects SET {assignments(_COLUMNS[1:])} WHERE id = %(id)s"
_FOR_USER = (
    f"SELECT {columns(tuple('p.' + c for c in _COLUMNS))} FROM projects p "
    "JOIN memberships m ON m.project_id = p.id "
    "WHERE m.user_id = %(user_id)s ORDER BY p.created_at, p.id"
)

_MEMBER_COLUMNS = ("project_id", "user_id", "role", "created_at")
_SELECT_MEMBER = f"SELECT {columns(_MEMBER_COLUMNS)} FROM memberships"
_INSERT_MEMBER = (
    f"INSERT INTO memberships ({columns(_MEMBER_COLUMNS)}) "
    f"VALUES ({placeholders(_MEMBER_COLUMNS)}) ON CONFLICT (project_id, user_id) DO NOTHING"
)
_KEY = "project_id = %(project_id)s AND user_id = %(user_id)s"


class PostgresProjectRepository(PostgresRepository, ProjectRepository):
    async def add(self, project: Project) -> None:
        await self._run(_INSERT, msgspec.structs.asdict(project))

    async def get(self, project_id: UUID) -> Project:
        return await self._get(f"{_SELECT} WHERE id = %(id)s", project_id)

    async def get_for_update(self, project_id: UUID) -> Project:
        return await self._get(f"{_SELECT} WHERE id = %(id)s FOR UPDATE", project_id)

    async def _get(self, query: LiteralString, project_id: UUID) -> Project:
        row = await self._one(query, {"id": project_id})
        if row is None:
            raise ProjectNotFound()
        return msgspec.convert(row, Project)

    async def update(self, project: Project) -> None:
        if await self._run(_UPDATE, msgspec.structs.asdict(project)) == 0:
            raise ProjectNotFound()

    async def delete(self, project_id: UUID) -> None:
        # Chats, messages, members, attachments and searches go with it (ON DELETE CASCADE).
        if await self._run("DELETE FROM projects WHERE id = %(id)s", {"id": project_id}) == 0:
            raise ProjectNotFound()

    async def list_for_user(self, user_id: UUID) -> list[Project]:
        rows = await self._all(_FOR_USER, {"user_id": user_id})
        return [msgspec.convert(r, Project) for r in rows]

    async def list_owned(self, owner_id: UUID) -> list[Project]:
        rows = await self._all(
            f"{_SELECT} WHERE owner_id = %(owner_id)s ORDER BY created_at, id",
            {"owner_id": owner_id},
        )
        return [msgspec.convert(r, Project) for r in rows]

    async def add_member(self, membership: Membership) -> None:
        if await self._run(_INSERT_MEMBER, msgspec.structs.asdict(membership)) == 0:
            raise AlreadyMember()

    async def get_membership(self, project_id: UUID, user_id: UUID) -> Membership | None:
        row = await self._one(
            f"{_SELECT_MEMBER} WHERE {_KEY}", {"project_id": project_id, "user_id": user_id}
        )
        return None if row is None else msgspec.convert(row, Membership)

    async def update_member(self, membership: Membership) -> None:
        query = f"UPDATE memberships SET role = %(role)s, created_at = %(created_at)s WHERE {_KEY}"
        if await self._run(query, msgspec.structs.asdict(membership)) == 0:
            raise MembershipNotFound()

    async def remove_member(self, project_id: UUID, user_id: UUID) -> None:
        query = f"DELETE FROM memberships WHERE {_KEY}"
        if await self._run(query, {"project_id": project_id, "user_id": user_id}) == 0:
            raise MembershipNotFound()

    async def list_members(self, project_id: UUID) -> list[Membership]:
        rows = await self._all(
            f"{_SELECT_MEMBER} WHERE project_id = %(project_id)s ORDER BY created_at, user_id",
            {"project_id": project_id},
        )
        return [msgspec.convert(r, Membership) for r in rows]
