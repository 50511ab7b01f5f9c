"""Use case: rename a project."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.projects import Project
from whalli.domain.services.projects.access import require_role
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class RenameProject(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID
    name: str | None  # None: nothing to change (still owners only)


class RenameProjectHandler:
    """Give a project a new name.

    Rules:
    - owners only: a non-member gets ``ProjectNotFound``, an editor or viewer ``PermissionDenied``;
    - the name follows the rules of ``CreateProject`` (``InvalidInput``);
    - personal projects may be renamed too;
    - no name (an empty PATCH) changes nothing, but is checked like a rename.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: RenameProject) -> Project:
        async with self._uow as uow:
            project = await uow.projects.get_for_update(command.project_id)
            await require_role(uow, command.project_id, command.user_id, "manage")
            if command.name is None:
                return project
            project.rename(command.name, self._clock.now())
            await uow.projects.update(project)
            await uow.commit()
        return project
