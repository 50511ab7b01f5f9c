"""Use case: take a member out of a project (or leave it)."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import MembershipNotFound
from whalli.domain.services.projects.access import require_role
from whalli.domain.services.projects.ownership import release_ownership
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class RemoveMember(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID
    member_id: UUID


class RemoveMemberHandler:
    """Remove member ``member_id``; a member removing themself leaves the project.

    Rules:
    - owners may remove anyone; any member may remove themself; a non-member gets
      ``ProjectNotFound``, an editor or viewer removing someone else ``PermissionDenied``;
    - ``member_id`` not a member: ``MembershipNotFound``;
    - the last owner cannot leave or be removed (``LastOwner``), nor the user a personal project
      belongs to (``PersonalProjectProtected``); the project is locked for the change;
    - the removed member loses access at once: every check reads memberships afresh;
    - the recurring searches they made in the project are paused in the same transaction:
      they could no longer run, nor be seen, paused or deleted by them, yet would hold their
      cap of active searches; the project's owners and editors still see them (and may
      delete them or, for a member back in the project, resume them);
    - the shared links they made to the project's chats are revoked in the same transaction,
      for good: a member removed for cause keeps no window on the project, and a member added
      back later does not reopen the old links (they were only hidden while out, yet listed
      and counted as live).
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow, self._clock = uow, clock

    async def execute(self, command: RemoveMember) -> None:
        leaving = command.member_id == command.user_id
        async with self._uow as uow:
            project = await uow.projects.get_for_update(command.project_id)
            await require_role(
                uow, command.project_id, command.user_id, "read" if leaving else "manage"
            )
            member = await uow.projects.get_membership(command.project_id, command.member_id)
            if member is None:
                raise MembershipNotFound()
            await release_ownership(uow, project, member, None)
            await uow.projects.remove_member(command.project_id, command.member_id)
            now = self._clock.now()
            await uow.searches.pause_for_member(command.project_id, command.member_id, now)
            await uow.shares.revoke_all_by_creator_in_project(
                command.project_id, command.member_id, now
            )
            await uow.commit()
