"""Use case: delete a project and everything in it."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import PersonalProjectProtected
from whalli.domain.services.chat.stop_replies import ReplyStopper
from whalli.domain.services.files.stored_objects import delete_objects
from whalli.domain.services.projects.access import require_role
from whalli.ports.blob_storage import BlobStorage
from whalli.ports.unit_of_work import UnitOfWork


class DeleteProject(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID


class DeleteProjectHandler:
    """Delete a project with its chats, files, searches and memberships.

    Rules:
    - owners only: a non-member gets ``ProjectNotFound``, an editor or viewer ``PermissionDenied``;
    - a personal project cannot be deleted: ``PersonalProjectProtected`` (a ``PermissionDenied``),
      since every user keeps one (see ``EnsurePersonalProject``);
    - once the deletion is committed, the stored bytes of the project's files are deleted too,
      a batch at a time (``delete_objects``), as deleting one file does (best effort: the
      storage is not transactional; one that fails is logged and left);
    - the replies of its chats still being generated (read in the deleting transaction) are
      asked to stop once it is committed (``ReplyStopper``, best effort), as deleting one
      chat does.
    """

    def __init__(
        self, uow: UnitOfWork, blobs: BlobStorage, stopper: ReplyStopper | None = None
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._stopper = stopper

    async def execute(self, command: DeleteProject) -> None:
        async with self._uow as uow:
            project = await uow.projects.get_for_update(command.project_id)
            await require_role(uow, command.project_id, command.user_id, "manage")
            if project.personal:
                raise PersonalProjectProtected()
            keys = await uow.attachments.object_keys_for_project(command.project_id)
            unfinished = (
                await uow.chats.unfinished_replies_in_project(command.project_id)
                if self._stopper
                else []
            )
            await uow.projects.delete(command.project_id)
            await uow.commit()
        if self._stopper is not None:
            await self._stopper.stop(unfinished, of=f"deleted project {command.project_id}")
        await delete_objects(self._blobs, keys, of="a deleted project")
