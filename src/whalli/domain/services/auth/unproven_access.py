"""What the first proof of an account's mailbox takes away: the access someone else may have set
up in it before (pre-account hijacking: they signed up with another's address first)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from whalli.domain.model.errors import LastOwner, PersonalProjectProtected, ProjectNotFound
from whalli.domain.model.projects import Project
from whalli.domain.services.projects.ownership import release_ownership
from whalli.ports.unit_of_work import UnitOfWork


async def end_unproven_access(uow: UnitOfWork, user_id: UUID, now: datetime) -> None:
    """In ``uow``, with the account locked, leave the account to whoever proved its mailbox:

    - its API keys are revoked and its provider (OAuth) links removed;
    - in every project it owns (``owner_id``, its personal one included) every other member is
      removed, whatever their role, and every shared link to the project's chats is revoked
      (who made the link may keep its token); the project stays, with its chats;
    - it leaves every project it is a member of without owning it (another account, maybe
      the squatter's own, would see what it puts there), unless that would leave the project
      without an owner (never expected: ``owner_id`` names another owner); it keeps nothing
      there, and the project keeps its owner;
    - a removed member's recurring searches in the project are paused, as ``RemoveMember``
      does, and so are the account's own in the projects it leaves, whose shared links it made
      to those projects' chats are revoked (as ``RemoveMember`` revokes a removed member's);
    - the projects are locked one by one in id order (after the account, as ``DeleteAccount``
      takes them), so membership changes at the same moment run before or after.
    """
    await uow.api_keys.revoke_all_for_user(user_id, now)
    for provider in {link.provider for link in await uow.oauth_identities.list_for_user(user_id)}:
        await uow.oauth_identities.remove(user_id, provider)
    for listed in sorted(await uow.projects.list_for_user(user_id), key=lambda p: p.id):
        try:
            project = await uow.projects.get_for_update(listed.id)
        except ProjectNotFound:
            continue  # deleted meanwhile
        if project.owner_id == user_id:
            await _keep_to_itself(uow, project, user_id, now)
        else:
            await _leave(uow, project, user_id, now)


async def _keep_to_itself(uow: UnitOfWork, project: Project, user_id: UUID, now: datetime) -> None:
    for member in await uow.projects.list_members(project.id):
        if member.user_id != user_id:
            await uow.projects.remove_member(project.id, member.user_id)
            await uow.searches.pause_for_member(project.id, member.user_id, now)
    await uow.shares.revoke_all_in_project(project.id, now)


async def _leave(uow: UnitOfWork, project: Project, user_id: UUID, now: datetime) -> None:
    member = await uow.projects.get_membership(project.id, user_id)
    if member is None:
        return  # removed meanwhile
    try:
        await release_ownership(uow, project, member, None)
    except (LastOwner, PersonalProjectProtected):
        return  # leaving would orphan the project: the account stays in it
    await uow.projects.remove_member(project.id, user_id)
    await uow.searches.pause_for_member(project.id, user_id, now)
    await uow.shares.revoke_all_by_creator_in_project(project.id, user_id, now)
