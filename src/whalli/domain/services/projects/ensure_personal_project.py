"""Use case: make sure a user has their personal project (run at sign-up and sign-in)."""

from __future__ import annotations

import uuid
from uuid import UUID

import msgspec

from whalli.domain.model.errors import Conflict
from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork

PERSONAL_PROJECT_NAME = "Personal"
_PERSONAL_NAMESPACE = UUID("6f1f3d4e-58a4-4d1e-9a52-2f0c6d1b7a10")


def personal_project_id(user_id: UUID) -> UUID:
    """The id a user's personal project is created with: the same for every attempt, so that
    two concurrent first sign-ins collide on the primary key instead of creating two projects."""
    return uuid.uuid5(_PERSONAL_NAMESPACE, str(user_id))


class EnsurePersonalProject(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    name: str = PERSONAL_PROJECT_NAME


class EnsurePersonalProjectHandler:
    """Return the user's personal project, creating it the first time.

    Rules:
    - every user has exactly one personal project, which they own; calling again returns it
      unchanged (idempotent, also under concurrent calls);
    - a personal project cannot be deleted and its user stays its owner (see ``DeleteProject``,
      ``ChangeMemberRole``, ``RemoveMember``); it may be renamed and shared;
    - an unknown user: ``UserNotFound``.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: EnsurePersonalProject) -> Project:
        try:
            return await self._ensure(command)
        except Conflict:
            # A concurrent call created it after we looked; this transaction has been rolled back,
            # and the next attempt finds the committed project.
            return await self._ensure(command)

    async def _ensure(self, command: EnsurePersonalProject) -> Project:
        async with self._uow as uow:
            existing = await self._find(uow, command.user_id)
            if existing is not None:
                return existing
            now = self._clock.now()
            project = Project.create(
                id=personal_project_id(command.user_id), name=command.name,
                owner_id=command.user_id, now=now, personal=True,
            )  # fmt: skip
            owner = Membership(
                project_id=project.id, user_id=command.user_id, role=MemberRole.OWNER,
                created_at=now,
            )  # fmt: skip
            await uow.projects.add(project)
            await uow.projects.add_member(owner)
            await uow.commit()
        return project

    @staticmethod
    async def _find(uow: UnitOfWork, user_id: UUID) -> Project | None:
        for project in await uow.projects.list_for_user(user_id):
            if project.personal and project.owner_id == user_id:
                return project
        return None
