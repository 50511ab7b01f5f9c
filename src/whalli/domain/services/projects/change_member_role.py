"""Use case: give a member another role."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import MembershipNotFound
from whalli.domain.model.projects import MemberRole, Membership
from whalli.domain.services.projects.access import require_role
from whalli.domain.services.projects.ownership import release_ownership
from whalli.ports.unit_of_work import UnitOfWork


class ChangeMemberRole(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID
    member_id: UUID
    role: MemberRole


class ChangeMemberRoleHandler:
    """Change the role of member ``member_id``.

    Rules:
    - owners only: a non-member gets ``ProjectNotFound``, an editor or viewer ``PermissionDenied``;
    - ``member_id`` not a member: ``MembershipNotFound``;
    - an owner may change their own role, but the last owner cannot be demoted (``LastOwner``),
      nor the user a personal project belongs to (``PersonalProjectProtected``);
    - the project is locked for the change, so concurrent demotions cannot remove every owner;
    - giving the role a member already has changes nothing.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ChangeMemberRole) -> Membership:
        async with self._uow as uow:
            project = await uow.projects.get_for_update(command.project_id)
            await require_role(uow, command.project_id, command.user_id, "manage")
            member = await uow.projects.get_membership(command.project_id, command.member_id)
            if member is None:
                raise MembershipNotFound()
            if member.role is command.role:
                return member
            await release_ownership(uow, project, member, command.role)
            changed = msgspec.structs.replace(member, role=command.role)
            await uow.projects.update_member(changed)
            await uow.commit()
        return changed
