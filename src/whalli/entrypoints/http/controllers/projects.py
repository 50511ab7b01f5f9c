"""Projects and their members: /api/projects (members may read, owners manage)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from whalli.domain.model import projects as model
from whalli.domain.model.principal import Principal
from whalli.domain.services.projects.add_member import AddMember, AddMemberHandler
from whalli.domain.services.projects.change_member_role import (
    ChangeMemberRole,
    ChangeMemberRoleHandler,
)
from whalli.domain.services.projects.create_project import CreateProject, CreateProjectHandler
from whalli.domain.services.projects.delete_project import DeleteProject, DeleteProjectHandler
from whalli.domain.services.projects.get_project import GetProject, GetProjectHandler
from whalli.domain.services.projects.list_member_profiles import (
    ListMemberProfiles,
    ListMemberProfilesHandler,
    MemberProfile,
)
from whalli.domain.services.projects.list_projects import ListProjects, ListProjectsHandler
from whalli.domain.services.projects.remove_member import RemoveMember, RemoveMemberHandler
from whalli.domain.services.projects.rename_project import RenameProject, RenameProjectHandler
from whalli.entrypoints.http.schemas import Inbound, Schema


class Project(Schema):
    id: UUID
    name: str
    owner_id: UUID
    personal: bool
    created_at: datetime
    updated_at: datetime


class ProjectCreate(Inbound):
    name: str


class ProjectUpdate(Inbound, omit_defaults=True):
    name: str | msgspec.UnsetType = msgspec.UNSET


class Member(Schema):
    user_id: UUID
    email: str
    name: str
    role: model.MemberRole
    joined_at: datetime


class Membership(Schema):
    project_id: UUID
    user_id: UUID
    role: model.MemberRole
    joined_at: datetime


class MemberAdd(Inbound):
    email: str
    role: model.MemberRole = model.MemberRole.EDITOR


class MemberUpdate(Inbound):
    role: model.MemberRole


def _project(project: model.Project) -> Project:
    return Project(
        id=project.id, name=project.name, owner_id=project.owner_id, personal=project.personal,
        created_at=project.created_at, updated_at=project.updated_at,
    )  # fmt: skip


def _membership(membership: model.Membership) -> Membership:
    return Membership(
        project_id=membership.project_id, user_id=membership.user_id, role=membership.role,
        joined_at=membership.created_at,
    )  # fmt: skip


def _member(profile: MemberProfile) -> Member:
    return Member(
        user_id=profile.user_id, email=profile.email, name=profile.name, role=profile.role,
        joined_at=profile.joined_at,
    )  # fmt: skip


class ProjectController(Controller):
    """Every route answers a non-member 404 (as for a missing project) and a member whose role
    does not allow the action 403; see ``domain.services.projects.access``."""

    path = "/api/projects"
    tags = ["projects"]

    @post("/", summary="Create a project (the caller becomes its owner)")
    async def create(
        self,
        principal: NamedDependency[Principal],
        create_project: NamedDependency[CreateProjectHandler],
        data: JSONBody[ProjectCreate],
    ) -> Project:
        command = CreateProject(user_id=principal.user_id, name=data.name)
        return _project(await create_project.execute(command))

    @get("/", summary="The caller's projects, oldest first")
    async def index(
        self,
        principal: NamedDependency[Principal],
        list_projects: NamedDependency[ListProjectsHandler],
    ) -> list[Project]:
        projects = await list_projects.execute(ListProjects(user_id=principal.user_id))
        return [_project(p) for p in projects]

    @get("/{project_id:uuid}", summary="One project (members)")
    async def read(
        self,
        principal: NamedDependency[Principal],
        get_project: NamedDependency[GetProjectHandler],
        project_id: FromPath[UUID],
    ) -> Project:
        command = GetProject(user_id=principal.user_id, project_id=project_id)
        return _project(await get_project.execute(command))

    @patch("/{project_id:uuid}", summary="Rename a project (owners)")
    async def update(
        self,
        principal: NamedDependency[Principal],
        rename_project: NamedDependency[RenameProjectHandler],
        project_id: FromPath[UUID],
        data: JSONBody[ProjectUpdate],
    ) -> Project:
        name = None if isinstance(data.name, msgspec.UnsetType) else data.name
        command = RenameProject(user_id=principal.user_id, project_id=project_id, name=name)
        return _project(await rename_project.execute(command))

    @delete("/{project_id:uuid}", summary="Delete a project and everything in it (owners)")
    async def remove(
        self,
        principal: NamedDependency[Principal],
        delete_project: NamedDependency[DeleteProjectHandler],
        project_id: FromPath[UUID],
    ) -> None:
        await delete_project.execute(
            DeleteProject(user_id=principal.user_id, project_id=project_id)
        )


class MemberController(Controller):
    """Members may list; owners add, change and remove; any member may remove themself (leave)."""

    path = "/api/projects/{project_id:uuid}/members"
    tags = ["projects"]

    @get("/", summary="A project's members, longest-standing first (members)")
    async def index(
        self,
        principal: NamedDependency[Principal],
        list_members: NamedDependency[ListMemberProfilesHandler],
        project_id: FromPath[UUID],
    ) -> list[Member]:
        command = ListMemberProfiles(user_id=principal.user_id, project_id=project_id)
        return [_member(m) for m in await list_members.execute(command)]

    @post("/", summary="Share the project with a registered account (owners)")
    async def add(
        self,
        principal: NamedDependency[Principal],
        add_member: NamedDependency[AddMemberHandler],
        project_id: FromPath[UUID],
        data: JSONBody[MemberAdd],
    ) -> Membership:
        command = AddMember(
            user_id=principal.user_id, project_id=project_id, email=data.email, role=data.role
        )
        return _membership(await add_member.execute(command))

    @patch("/{member_id:uuid}", summary="Give a member another role (owners)")
    async def update(
        self,
        principal: NamedDependency[Principal],
        change_member_role: NamedDependency[ChangeMemberRoleHandler],
        project_id: FromPath[UUID],
        member_id: FromPath[UUID],
        data: JSONBody[MemberUpdate],
    ) -> Membership:
        command = ChangeMemberRole(
            user_id=principal.user_id, project_id=project_id, member_id=member_id, role=data.role
        )
        return _membership(await change_member_role.execute(command))

    @delete("/{member_id:uuid}", summary="Remove a member (owners), or leave (the member)")
    async def remove(
        self,
        principal: NamedDependency[Principal],
        remove_member: NamedDependency[RemoveMemberHandler],
        project_id: FromPath[UUID],
        member_id: FromPath[UUID],
    ) -> None:
        command = RemoveMember(
            user_id=principal.user_id, project_id=project_id, member_id=member_id
        )
        await remove_member.execute(command)
