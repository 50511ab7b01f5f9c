"""What every change that takes a member's ownership away must respect (shared by use cases)."""

from __future__ import annotations

from whalli.domain.model.errors import LastOwner, PersonalProjectProtected
from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.ports.unit_of_work import UnitOfWork


async def release_ownership(
    uow: UnitOfWork, project: Project, member: Membership, new_role: MemberRole | None
) -> None:
    """Check that ``member`` may become ``new_role`` (``None``: leave) and keep ``owner_id`` valid.

    Call with the project locked (``get_for_update``) so that concurrent changes are serialized.
    Rules:
    - the user a personal project belongs to stays its owner (``PersonalProjectProtected``);
    - a project keeps at least one owner (``LastOwner``);
    - when the member named by ``project.owner_id`` stops being an owner, ``owner_id`` moves to
      the longest-standing remaining owner (and the project is updated).
    """
    if member.role is not MemberRole.OWNER or new_role is MemberRole.OWNER:
        return
    if project.personal and member.user_id == project.owner_id:
        raise PersonalProjectProtected()
    others = [
        m
        for m in await uow.projects.list_members(project.id)
        if m.role is MemberRole.OWNER and m.user_id != member.user_id
    ]
    if not others:
        raise LastOwner()
    if project.owner_id == member.user_id:
        project.owner_id = others[0].user_id
        await uow.projects.update(project)
