"""Use case: create a shared project."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork


class CreateProject(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    name: str


class CreateProjectHandler:
    """Create a project and make its creator its owner.

    Rules:
    - the name is trimmed, inner whitespace collapsed, 1 to 120 characters (``InvalidInput``);
    - the creator becomes the project's ``owner_id`` and an ``owner`` member, in one transaction;
    - projects created here are never personal (see ``EnsurePersonalProject``).
    """

    def __init__(self, uow: UnitOfWork, clock: Clock, ids: IdGenerator) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids

    async def execute(self, command: CreateProject) -> Project:
        now = self._clock.now()
        project = Project.create(
            id=self._ids.new_id(), name=command.name, owner_id=command.user_id, now=now
        )
        owner = Membership(
            project_id=project.id, user_id=command.user_id, role=MemberRole.OWNER, created_at=now
        )
        async with self._uow as uow:
            await uow.projects.add(project)
            await uow.projects.add_member(owner)
            await uow.commit()
        return project
