"""Project use cases on the real Postgres unit of work (and, for comparison, the in-memory one)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.system.ids import UuidGenerator
from whalli.domain.model.errors import (
    LastOwner,
    PermissionDenied,
    PersonalProjectProtected,
    ProjectNotFound,
)
from whalli.domain.model.projects import MemberRole, Project
from whalli.domain.model.users import User
from whalli.domain.services.projects.add_member import AddMember, AddMemberHandler
from whalli.domain.services.projects.change_member_role import (
    ChangeMemberRole,
    ChangeMemberRoleHandler,
)
from whalli.domain.services.projects.create_project import CreateProject, CreateProjectHandler
from whalli.domain.services.projects.delete_project import DeleteProject, DeleteProjectHandler
from whalli.domain.services.projects.ensure_personal_project import (
    EnsurePersonalProject,
    EnsurePersonalProjectHandler,
)
from whalli.domain.services.projects.get_project import GetProject, GetProjectHandler
from whalli.domain.services.projects.list_members import ListMembers, ListMembersHandler
from whalli.domain.services.projects.list_projects import ListProjects, ListProjectsHandler
from whalli.domain.services.projects.remove_member import RemoveMember, RemoveMemberHandler

from .conftest import UowFactory
from .entities import a_user

OWNER, EDITOR, VIEWER = MemberRole.OWNER, MemberRole.EDITOR, MemberRole.VIEWER
clock = ManualClock()
ids = UuidGenerator()


async def stored_users(uow_factory: UowFactory, count: int) -> list[User]:
    users = [a_user() for _ in range(count)]
    async with uow_factory() as uow:
        for user in users:
            await uow.users.add(user)
        await uow.commit()
    return users


async def create(
    uow_factory: UowFactory, owner: User, *members: tuple[User, MemberRole]
) -> Project:
    project = await CreateProjectHandler(uow_factory(), clock, ids).execute(
        CreateProject(user_id=owner.id, name="Research")
    )
    for user, role in members:
        await AddMemberHandler(uow_factory(), clock).execute(
            AddMember(user_id=owner.id, project_id=project.id, email=user.email, role=role)
        )
    return project


async def warm_up(uow_factory: UowFactory, connections: int) -> None:
    """Open that many connections at once, so that concurrent use cases then really overlap
    instead of the first finishing while the pool opens a connection for the next."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(connections):
            uow = await stack.enter_async_context(uow_factory())
            await uow.users.find_by_email("nobody@example.com")


async def roles(uow_factory: UowFactory, project: Project) -> dict[uuid.UUID, MemberRole]:
    members = await ListMembersHandler(uow_factory()).execute(
        ListMembers(user_id=project.owner_id, project_id=project.id)
    )
    return {m.user_id: m.role for m in members}


async def test_a_member_is_added_seen_and_removed_and_then_loses_access(
    uow_factory: UowFactory,
) -> None:
    ada, bob = await stored_users(uow_factory, 2)
    project = await create(uow_factory, ada, (bob, VIEWER))
    assert await roles(uow_factory, project) == {ada.id: OWNER, bob.id: VIEWER}
    seen = await GetProjectHandler(uow_factory()).execute(
        GetProject(user_id=bob.id, project_id=project.id)
    )
    assert seen == project

    await RemoveMemberHandler(uow_factory(), clock).execute(
        RemoveMember(user_id=ada.id, project_id=project.id, member_id=bob.id)
    )

    with pytest.raises(ProjectNotFound, match="Project not found"):
        await GetProjectHandler(uow_factory()).execute(
            GetProject(user_id=bob.id, project_id=project.id)
        )
    assert await ListProjectsHandler(uow_factory()).execute(ListProjects(user_id=bob.id)) == []


async def test_a_non_member_cannot_tell_a_project_from_a_missing_one(
    uow_factory: UowFactory,
) -> None:
    ada, bob = await stored_users(uow_factory, 2)
    project = await create(uow_factory, ada)
    for project_id in (project.id, uuid.uuid4()):
        with pytest.raises(ProjectNotFound, match="Project not found"):
            await DeleteProjectHandler(uow_factory(), InMemoryBlobStorage()).execute(
                DeleteProject(user_id=bob.id, project_id=project_id)
            )
    assert await roles(uow_factory, project) == {ada.id: OWNER}


async def test_the_last_owner_stays_and_the_owner_of_record_follows_a_handover(
    uow_factory: UowFactory,
) -> None:
    ada, bob = await stored_users(uow_factory, 2)
    project = await create(uow_factory, ada, (bob, EDITOR))
    change = ChangeMemberRoleHandler
    with pytest.raises(LastOwner, match="at least one owner"):
        await change(uow_factory()).execute(
            ChangeMemberRole(user_id=ada.id, project_id=project.id, member_id=ada.id, role=EDITOR)
        )
    await change(uow_factory()).execute(
        ChangeMemberRole(user_id=ada.id, project_id=project.id, member_id=bob.id, role=OWNER)
    )
    await RemoveMemberHandler(uow_factory(), clock).execute(
        RemoveMember(user_id=ada.id, project_id=project.id, member_id=ada.id)
    )
    async with uow_factory() as uow:
        assert (await uow.projects.get(project.id)).owner_id == bob.id
        assert [m.user_id for m in await uow.projects.list_members(project.id)] == [bob.id]


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    uow_factory: UowFactory,
) -> None:
    ada, bob = await stored_users(uow_factory, 2)
    project = await create(uow_factory, ada, (bob, OWNER))

    async def demote(actor: User, target: User) -> None:
        await ChangeMemberRoleHandler(uow_factory()).execute(
            ChangeMemberRole(
                user_id=actor.id, project_id=project.id, member_id=target.id, role=VIEWER
            )
        )

    await warm_up(uow_factory, 2)
    outcomes = await asyncio.gather(demote(ada, bob), demote(bob, ada), return_exceptions=True)

    # Whichever ran second waited for the project lock, then found itself demoted already.
    refused = [o for o in outcomes if o is not None]
    assert len(refused) == 1
    assert isinstance(refused[0], PermissionDenied)
    async with uow_factory() as uow:
        members = await uow.projects.list_members(project.id)
        owners = [m.user_id for m in members if m.role is OWNER]
        assert len(owners) == 1
        assert (await uow.projects.get(project.id)).owner_id == owners[0]


async def test_concurrent_first_sign_ins_create_one_personal_project(
    uow_factory: UowFactory,
) -> None:
    (ada,) = await stored_users(uow_factory, 1)

    async def ensure() -> Project:
        return await EnsurePersonalProjectHandler(uow_factory(), clock).execute(
            EnsurePersonalProject(user_id=ada.id)
        )

    await warm_up(uow_factory, 5)
    projects = await asyncio.gather(*(ensure() for _ in range(5)))

    assert len({p.id for p in projects}) == 1
    listed = await ListProjectsHandler(uow_factory()).execute(ListProjects(user_id=ada.id))
    assert [p.id for p in listed] == [projects[0].id]
    with pytest.raises(PersonalProjectProtected, match="cannot be deleted"):
        await DeleteProjectHandler(uow_factory(), InMemoryBlobStorage()).execute(
            DeleteProject(user_id=ada.id, project_id=projects[0].id)
        )
