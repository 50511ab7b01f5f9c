"""Use case: delete a project and everything in it."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import PersonalProjectProtected
from whalli.domain.services.projects.access import require_role
from whalli.ports.unit_of_work import UnitOfWork


class DeleteProject(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID


class DeleteProjectHandler:
    """Delete a project with its chats, files, searches and memberships.

    Rules:
    - owners only: a non-member gets ``ProjectNotFound``, an editor or viewer ``PermissionDenied``;
    - a personal project cannot be deleted: ``PersonalProjectProtected`` (a ``PermissionDenied``),
      since every user keeps one (see ``EnsurePersonalProject``).
    Stored blobs of the project's files are not removed here (the storage is not transactional).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: DeleteProject) -> None:
        async with self._uow as uow:
            project = await uow.projects.get_for_update(command.project_id)
            await require_role(uow, command.project_id, command.user_id, "manage")
            if project.personal:
                raise PersonalProjectProtected()
            await uow.projects.delete(command.project_id)
            await uow.commit()
