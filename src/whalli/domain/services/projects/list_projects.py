"""Use case: the projects a user can see."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.projects import Project
from whalli.ports.unit_of_work import UnitOfWork


class ListProjects(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID


class ListProjectsHandler:
    """List the caller's projects, oldest first.

    Rules:
    - only projects the caller is a member of (any role) are listed; others are invisible.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListProjects) -> list[Project]:
        async with self._uow as uow:
            return await uow.projects.list_for_user(command.user_id)
