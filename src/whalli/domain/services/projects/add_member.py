"""Use case: share a project with another user."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.errors import AlreadyMember, UserNotFound
from whalli.domain.model.projects import MemberRole, Membership
from whalli.domain.model.users import normalize_email
from whalli.domain.services.projects.access import require_role
from whalli.ports.clock import Clock
from whalli.ports.unit_of_work import UnitOfWork


class AddMember(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    project_id: UUID
    email: str
    role: MemberRole = MemberRole.EDITOR


class AddMemberHandler:
    """Add the account registered under ``email`` to the project with ``role``.

    Rules:
    - owners only: a non-member gets ``ProjectNotFound``, an editor or viewer ``PermissionDenied``;
    - the email is normalized (``InvalidEmail`` if it is not one); no account with it:
      ``UserNotFound`` (only owners can learn this, and only through this use case);
    - someone who is already a member, in any role: ``AlreadyMember`` (use ``ChangeMemberRole``);
    - any role may be given, ``owner`` included; personal projects may be shared too.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def execute(self, command: AddMember) -> Membership:
        email = normalize_email(command.email)
        async with self._uow as uow:
            await uow.projects.get_for_update(command.project_id)
            await require_role(uow, command.project_id, command.user_id, "manage")
            user = await uow.users.find_by_email(email)
            if user is None:
                raise UserNotFound(f"No account is registered under {email}.")
            if await uow.projects.get_membership(command.project_id, user.id) is not None:
                raise AlreadyMember()
            membership = Membership(
                project_id=command.project_id,
                user_id=user.id,
                role=command.role,
                created_at=self._clock.now(),
            )
            await uow.projects.add_member(membership)
            await uow.commit()
        return membership
