"""The access rule every project-scoped use case goes through.

Non-members get 404, members lacking rights get 403: a caller who is not a member of a project
is told ``ProjectNotFound``, exactly as if the project did not exist, so that project ids cannot
be probed; a member whose role does not allow the action is told ``PermissionDenied``.

Rights by role (``MemberRole``): ``read`` for every member, ``write`` for owners and editors,
``manage`` (members, rename, delete) for owners only.

The membership is read from the unit of work on every call, never cached, so a member who was
removed or demoted loses the corresponding access on their next request.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from whalli.domain.model.errors import PermissionDenied, ProjectNotFound
from whalli.domain.model.projects import Membership
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.ports.unit_of_work import UnitOfWork

Need = Literal["read", "write", "manage"]


async def require_role(uow: UnitOfWork, project_id: UUID, user_id: UUID, need: Need) -> Membership:
    """The caller's membership, if it grants ``need``; call inside ``async with uow:``.

    Raises ``ProjectNotFound`` when the caller is not a member (or the project does not exist)
    and ``PermissionDenied`` when the caller is a member whose role does not grant ``need``.
    """
    membership = await uow.projects.get_membership(project_id, user_id)
    if membership is None:
        raise ProjectNotFound()
    role = membership.role
    allowed = {"read": role.can_read, "write": role.can_write, "manage": role.can_manage}[need]
    if not allowed():
        raise PermissionDenied(
            f"Your role in this project ({role}) does not allow this ({need} access needed).",
            need=need,
        )
    return membership


async def project_to_write(uow: UnitOfWork, user_id: UUID, project_id: UUID | None) -> UUID:
    """The project new chats of the caller go to: ``project_id`` if they may write to it
    (``require_role``'s errors otherwise), else their personal project. That one is always
    theirs to write (``EnsurePersonalProject``'s rule), so it costs no read; were it missing,
    the caller's insert answers ``ProjectNotFound``."""
    personal = personal_project_id(user_id)
    if project_id is not None and project_id != personal:
        await require_role(uow, project_id, user_id, "write")
        return project_id
    return personal
