"""Use case: who is in a project, with each member's email and name (for display)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.projects import MemberRole
from whalli.domain.services.projects.access import require_role
from whalli.ports.unit_of_work import UnitOfWork


class ListMemberProfiles(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID


class MemberProfile(Value, frozen=True, kw_only=True):
    user_id: UUID
    email: str
    name: str
    role: MemberRole
    joined_at: datetime


class ListMemberProfilesHandler:
    """List a project's members with their email and name, longest-standing first.

    Rules:
    - any member may list them; a non-member gets ``ProjectNotFound`` (see ``access``);
    - members see each other's email and name (they need them to share the project), nothing else.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListMemberProfiles) -> list[MemberProfile]:
        async with self._uow as uow:
            await require_role(uow, command.project_id, command.user_id, "read")
            profiles: list[MemberProfile] = []
            # One read per member: projects have a handful of members, a join is not worth a port.
            for member in await uow.projects.list_members(command.project_id):
                user = await uow.users.get(member.user_id)
                profiles.append(
                    MemberProfile(
                        user_id=user.id,
                        email=user.email,
                        name=user.name,
                        role=member.role,
                        joined_at=member.created_at,
                    )
                )
            return profiles
