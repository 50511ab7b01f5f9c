"""Use case: read one project."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.projects import Project
from whalli.domain.services.projects.access import require_role
from whalli.ports.unit_of_work import UnitOfWork


class GetProject(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID


class GetProjectHandler:
    """Return a project to one of its members.

    Rules:
    - any member may read it; a non-member gets ``ProjectNotFound`` (see ``access``).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: GetProject) -> Project:
        async with self._uow as uow:
            await require_role(uow, command.project_id, command.user_id, "read")
            return await uow.projects.get(command.project_id)
