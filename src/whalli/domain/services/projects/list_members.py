"""Use case: who is in a project."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.projects import Membership
from whalli.domain.services.projects.access import require_role
from whalli.ports.unit_of_work import UnitOfWork


class ListMembers(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID


class ListMembersHandler:
    """List a project's memberships, longest-standing first.

    Rules:
    - any member may list them; a non-member gets ``ProjectNotFound`` (see ``access``).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListMembers) -> list[Membership]:
        async with self._uow as uow:
            await require_role(uow, command.project_id, command.user_id, "read")
            return await uow.projects.list_members(command.project_id)
