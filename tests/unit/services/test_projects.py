"""Project and membership use cases on the in-memory unit of work: access, roles, owners."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.errors import (
    AlreadyMember,
    InvalidEmail,
    InvalidInput,
    LastOwner,
    MembershipNotFound,
    PermissionDenied,
    PersonalProjectProtected,
    ProjectNotFound,
    UserNotFound,
)
from whalli.domain.model.projects import MemberRole, Membership, Project
from whalli.domain.model.users import User
from whalli.domain.services.projects.access import Need, require_role
from whalli.domain.services.projects.add_member import AddMember, AddMemberHandler
from whalli.domain.services.projects.change_member_role import (
    ChangeMemberRole,
    ChangeMemberRoleHandler,
)
from whalli.domain.services.projects.create_project import CreateProject, CreateProjectHandler
from whalli.domain.services.projects.delete_project import DeleteProject, DeleteProjectHandler
from whalli.domain.services.projects.ensure_personal_project import (
    PERSONAL_PROJECT_NAME,
    EnsurePersonalProject,
    EnsurePersonalProjectHandler,
)
from whalli.domain.services.projects.get_project import GetProject, GetProjectHandler
from whalli.domain.services.projects.list_members import ListMembers, ListMembersHandler
from whalli.domain.services.projects.list_projects import ListProjects, ListProjectsHandler
from whalli.domain.services.projects.remove_member import RemoveMember, RemoveMemberHandler
from whalli.domain.services.projects.rename_project import RenameProject, RenameProjectHandler

OWNER, EDITOR, VIEWER = MemberRole.OWNER, MemberRole.EDITOR, MemberRole.VIEWER


class App:
    """The use cases over one in-memory store; each call gets a fresh unit of work."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.ids = SequentialIds()
        self.blobs = InMemoryBlobStorage()
        self._handlers: dict[type, Callable[[], Any]] = {
            CreateProject: lambda: CreateProjectHandler(self.uow(), self.clock, self.ids),
            ListProjects: lambda: ListProjectsHandler(self.uow()),
            GetProject: lambda: GetProjectHandler(self.uow()),
            RenameProject: lambda: RenameProjectHandler(self.uow(), self.clock),
            DeleteProject: lambda: DeleteProjectHandler(self.uow(), self.blobs),
            AddMember: lambda: AddMemberHandler(self.uow(), self.clock),
            ChangeMemberRole: lambda: ChangeMemberRoleHandler(self.uow()),
            RemoveMember: lambda: RemoveMemberHandler(self.uow(), self.clock),
            ListMembers: lambda: ListMembersHandler(self.uow()),
            EnsurePersonalProject: lambda: EnsurePersonalProjectHandler(self.uow(), self.clock),
        }

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    async def run(self, command: Any) -> Any:
        return await self._handlers[type(command)]().execute(command)

    async def user(self, name: str) -> User:
        user = User.create(
            id=self.ids.new_id(), email=f"{name}@example.com", name=name, now=self.clock.now()
        )
        async with self.uow() as uow:
            await uow.users.add(user)
            await uow.commit()
        return user

    async def project(self, owner: User, *members: tuple[User, MemberRole]) -> Project:
        project: Project = await self.run(CreateProject(user_id=owner.id, name="Research"))
        for user, role in members:
            await self.run(
                AddMember(user_id=owner.id, project_id=project.id, email=user.email, role=role)
            )
        return project

    async def roles(self, project_id: uuid.UUID) -> dict[uuid.UUID, MemberRole]:
        async with self.uow() as uow:
            return {m.user_id: m.role for m in await uow.projects.list_members(project_id)}

    async def stored(self, project_id: uuid.UUID) -> Project:
        async with self.uow() as uow:
            return await uow.projects.get(project_id)


@pytest.fixture
def app() -> App:
    return App()


# --- creating, listing, reading -------------------------------------------------------------
async def test_the_creator_of_a_project_becomes_its_owner(app: App) -> None:
    ada = await app.user("ada")
    project = await app.run(CreateProject(user_id=ada.id, name="  Market   research "))
    assert project.name == "Market research"
    assert project.owner_id == ada.id
    assert not project.personal
    assert await app.roles(project.id) == {ada.id: OWNER}
    assert await app.stored(project.id) == project


async def test_a_project_needs_a_name(app: App) -> None:
    ada = await app.user("ada")
    with pytest.raises(InvalidInput, match="1 to 120 characters"):
        await app.run(CreateProject(user_id=ada.id, name="   "))
    assert await app.run(ListProjects(user_id=ada.id)) == []


async def test_a_user_lists_only_the_projects_they_belong_to(app: App) -> None:
    ada, bob, cid = await app.user("ada"), await app.user("bob"), await app.user("cid")
    adas = await app.project(ada)
    shared = await app.project(bob, (ada, VIEWER))
    bobs = await app.project(bob)
    assert [p.id for p in await app.run(ListProjects(user_id=ada.id))] == [adas.id, shared.id]
    assert [p.id for p in await app.run(ListProjects(user_id=bob.id))] == [shared.id, bobs.id]
    assert await app.run(ListProjects(user_id=cid.id)) == []


# --- the stranger matrix: non-members cannot tell a project from a missing one ---------------
def stranger_commands(stranger: User, owner: User, project_id: uuid.UUID) -> list[Any]:
    return [
        GetProject(user_id=stranger.id, project_id=project_id),
        RenameProject(user_id=stranger.id, project_id=project_id, name="Mine now"),
        DeleteProject(user_id=stranger.id, project_id=project_id),
        AddMember(user_id=stranger.id, project_id=project_id, email=stranger.email, role=OWNER),
        ChangeMemberRole(
            user_id=stranger.id, project_id=project_id, member_id=owner.id, role=VIEWER
        ),
        RemoveMember(user_id=stranger.id, project_id=project_id, member_id=owner.id),
        RemoveMember(user_id=stranger.id, project_id=project_id, member_id=stranger.id),
        ListMembers(user_id=stranger.id, project_id=project_id),
    ]


@pytest.mark.parametrize("personal", [False, True], ids=["shared", "personal"])
@pytest.mark.parametrize("index", range(8), ids=lambda i: f"use-case-{i}")
async def test_a_non_member_is_told_the_project_does_not_exist(
    app: App, index: int, personal: bool
) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    if personal:
        project = await app.run(EnsurePersonalProject(user_id=ada.id))
    else:
        project = await app.project(ada)
    before = (await app.stored(project.id), await app.roles(project.id))

    with pytest.raises(ProjectNotFound, match="Project not found") as on_real:
        await app.run(stranger_commands(bob, ada, project.id)[index])
    with pytest.raises(ProjectNotFound, match="Project not found") as on_missing:
        await app.run(stranger_commands(bob, ada, uuid.uuid4())[index])

    assert (on_real.value.code, on_real.value.message, on_real.value.details) == (
        on_missing.value.code, on_missing.value.message, on_missing.value.details,
    )  # fmt: skip
    assert (await app.stored(project.id), await app.roles(project.id)) == before


# --- what each role may do ------------------------------------------------------------------
def member_commands(me: User, other: User, newcomer: User, project_id: uuid.UUID) -> dict[str, Any]:
    p = project_id
    return {
        "get": GetProject(user_id=me.id, project_id=p),
        "list members": ListMembers(user_id=me.id, project_id=p),
        "rename": RenameProject(user_id=me.id, project_id=p, name="Renamed"),
        "add member": AddMember(user_id=me.id, project_id=p, email=newcomer.email),
        "change role": ChangeMemberRole(
            user_id=me.id, project_id=p, member_id=other.id, role=OWNER
        ),
        "remove other": RemoveMember(user_id=me.id, project_id=p, member_id=other.id),
        "leave": RemoveMember(user_id=me.id, project_id=p, member_id=me.id),
        "delete": DeleteProject(user_id=me.id, project_id=p),
    }


EVERYONE = {"get", "list members", "leave"}
ALLOWED = {
    VIEWER: EVERYONE,
    EDITOR: EVERYONE,
    OWNER: EVERYONE | {"rename", "add member", "change role", "remove other", "delete"},
}


@pytest.mark.parametrize("role", [VIEWER, EDITOR, OWNER])
@pytest.mark.parametrize(
    "action",
    ["get", "list members", "rename", "add member", "change role", "remove other", "leave",
     "delete"],
)  # fmt: skip
async def test_each_role_may_do_exactly_what_it_is_allowed_to(
    app: App, role: MemberRole, action: str
) -> None:
    ada, me, other, newcomer = [await app.user(n) for n in ("ada", "me", "other", "newcomer")]
    project = await app.project(ada, (me, role), (other, EDITOR))
    command = member_commands(me, other, newcomer, project.id)[action]
    before = await app.roles(project.id)

    if action in ALLOWED[role]:
        await app.run(command)
    else:
        with pytest.raises(PermissionDenied, match=rf"Your role in this project \({role}\)"):
            await app.run(command)
        assert await app.roles(project.id) == before
        assert (await app.stored(project.id)).name == "Research"


async def test_the_outcome_of_each_allowed_action_is_stored(app: App) -> None:
    ada, bob, cid = await app.user("ada"), await app.user("bob"), await app.user("cid")
    project = await app.project(ada, (bob, VIEWER))
    app.clock.advance(60)

    renamed = await app.run(RenameProject(user_id=ada.id, project_id=project.id, name="New"))
    assert (await app.stored(project.id)).name == renamed.name == "New"
    assert renamed.updated_at == app.clock.now()

    added = await app.run(
        AddMember(user_id=ada.id, project_id=project.id, email=" CID@Example.com ", role=VIEWER)
    )
    assert added == Membership(
        project_id=project.id, user_id=cid.id, role=VIEWER, created_at=app.clock.now()
    )
    await app.run(ChangeMemberRole(user_id=ada.id, project_id=project.id, member_id=bob.id,
                                   role=EDITOR))  # fmt: skip
    await app.run(RemoveMember(user_id=ada.id, project_id=project.id, member_id=cid.id))
    members = await app.run(ListMembers(user_id=bob.id, project_id=project.id))
    assert [(m.user_id, m.role) for m in members] == [(ada.id, OWNER), (bob.id, EDITOR)]

    await app.run(DeleteProject(user_id=ada.id, project_id=project.id))
    with pytest.raises(ProjectNotFound, match="Project not found"):
        await app.stored(project.id)
    assert await app.run(ListProjects(user_id=bob.id)) == []


@pytest.mark.parametrize(("need", "viewer", "editor", "owner"), [
    ("read", True, True, True), ("write", False, True, True), ("manage", False, False, True),
])  # fmt: skip
async def test_the_access_rule_grants_each_need_to_the_roles_that_have_it(
    app: App, need: Need, viewer: bool, editor: bool, owner: bool
) -> None:
    ada, vic, eve = await app.user("ada"), await app.user("vic"), await app.user("eve")
    project = await app.project(ada, (vic, VIEWER), (eve, EDITOR))
    for user, allowed in ((vic, viewer), (eve, editor), (ada, owner)):
        async with app.uow() as uow:
            if allowed:
                membership = await require_role(uow, project.id, user.id, need)
                assert membership.user_id == user.id
            else:
                with pytest.raises(PermissionDenied, match=f"{need} access needed"):
                    await require_role(uow, project.id, user.id, need)


# --- adding members -------------------------------------------------------------------------
async def test_adding_an_unknown_email_says_the_user_is_not_found(app: App) -> None:
    ada = await app.user("ada")
    project = await app.project(ada)
    with pytest.raises(UserNotFound, match=r"No account is registered under nobody@example\.com"):
        await app.run(AddMember(user_id=ada.id, project_id=project.id, email="Nobody@example.com"))
    with pytest.raises(InvalidEmail, match="not a valid email"):
        await app.run(AddMember(user_id=ada.id, project_id=project.id, email="nobody"))
    assert await app.roles(project.id) == {ada.id: OWNER}


async def test_adding_someone_who_is_already_a_member_is_refused(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    project = await app.project(ada, (bob, VIEWER))
    for email in (bob.email, ada.email):
        with pytest.raises(AlreadyMember, match="already a member"):
            await app.run(AddMember(user_id=ada.id, project_id=project.id, email=email, role=OWNER))
    assert await app.roles(project.id) == {ada.id: OWNER, bob.id: VIEWER}


async def test_changing_or_removing_a_non_member_says_the_member_is_not_found(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    project = await app.project(ada)
    with pytest.raises(MembershipNotFound, match="Member not found"):
        await app.run(ChangeMemberRole(user_id=ada.id, project_id=project.id, member_id=bob.id,
                                       role=EDITOR))  # fmt: skip
    with pytest.raises(MembershipNotFound, match="Member not found"):
        await app.run(RemoveMember(user_id=ada.id, project_id=project.id, member_id=bob.id))


# --- owners ---------------------------------------------------------------------------------
async def test_the_last_owner_can_be_neither_demoted_nor_removed(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    project = await app.project(ada, (bob, EDITOR))
    for role in (EDITOR, VIEWER):
        with pytest.raises(LastOwner, match="at least one owner"):
            await app.run(ChangeMemberRole(user_id=ada.id, project_id=project.id,
                                           member_id=ada.id, role=role))  # fmt: skip
    with pytest.raises(LastOwner, match="at least one owner"):
        await app.run(RemoveMember(user_id=ada.id, project_id=project.id, member_id=ada.id))
    assert await app.roles(project.id) == {ada.id: OWNER, bob.id: EDITOR}


async def test_an_owner_may_step_down_once_another_owner_exists(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    project = await app.project(ada, (bob, EDITOR))
    await app.run(ChangeMemberRole(user_id=ada.id, project_id=project.id, member_id=bob.id,
                                   role=OWNER))  # fmt: skip
    await app.run(ChangeMemberRole(user_id=ada.id, project_id=project.id, member_id=ada.id,
                                   role=VIEWER))  # fmt: skip

    assert await app.roles(project.id) == {ada.id: VIEWER, bob.id: OWNER}
    assert (await app.stored(project.id)).owner_id == bob.id  # the owner of record follows
    with pytest.raises(LastOwner, match="at least one owner"):
        await app.run(RemoveMember(user_id=bob.id, project_id=project.id, member_id=bob.id))
    with pytest.raises(PermissionDenied, match=r"\(viewer\)"):
        await app.run(RenameProject(user_id=ada.id, project_id=project.id, name="Mine"))


async def test_an_owner_leaving_hands_the_project_to_the_longest_standing_owner(app: App) -> None:
    ada, bob, cid = await app.user("ada"), await app.user("bob"), await app.user("cid")
    project = await app.project(ada, (bob, OWNER), (cid, OWNER))
    await app.run(RemoveMember(user_id=cid.id, project_id=project.id, member_id=ada.id))
    assert (await app.stored(project.id)).owner_id == bob.id
    assert await app.roles(project.id) == {bob.id: OWNER, cid.id: OWNER}


async def test_giving_a_member_the_role_they_have_changes_nothing(app: App) -> None:
    ada = await app.user("ada")
    project = await app.project(ada)
    same = await app.run(ChangeMemberRole(user_id=ada.id, project_id=project.id,
                                          member_id=ada.id, role=OWNER))  # fmt: skip
    assert same.role is OWNER
    assert await app.roles(project.id) == {ada.id: OWNER}


# --- access follows membership changes at once -----------------------------------------------
async def test_a_removed_member_loses_access_on_the_next_call(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    project = await app.project(ada, (bob, EDITOR))
    assert (await app.run(GetProject(user_id=bob.id, project_id=project.id))).id == project.id

    await app.run(RemoveMember(user_id=ada.id, project_id=project.id, member_id=bob.id))

    with pytest.raises(ProjectNotFound, match="Project not found"):
        await app.run(GetProject(user_id=bob.id, project_id=project.id))
    with pytest.raises(ProjectNotFound, match="Project not found"):
        await app.run(ListMembers(user_id=bob.id, project_id=project.id))
    assert await app.run(ListProjects(user_id=bob.id)) == []


async def test_a_member_who_left_loses_access_on_the_next_call(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    project = await app.project(ada, (bob, VIEWER))
    await app.run(RemoveMember(user_id=bob.id, project_id=project.id, member_id=bob.id))
    with pytest.raises(ProjectNotFound, match="Project not found"):
        await app.run(GetProject(user_id=bob.id, project_id=project.id))
    assert await app.roles(project.id) == {ada.id: OWNER}


async def test_a_demoted_owner_loses_the_owner_rights_on_the_next_call(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    project = await app.project(ada, (bob, OWNER))
    await app.run(RenameProject(user_id=bob.id, project_id=project.id, name="By Bob"))
    await app.run(ChangeMemberRole(user_id=ada.id, project_id=project.id, member_id=bob.id,
                                   role=VIEWER))  # fmt: skip
    with pytest.raises(PermissionDenied, match=r"\(viewer\).*manage access needed"):
        await app.run(RenameProject(user_id=bob.id, project_id=project.id, name="Again"))
    assert (await app.stored(project.id)).name == "By Bob"


# --- the personal project --------------------------------------------------------------------
async def test_every_user_gets_one_personal_project_however_often_it_is_ensured(app: App) -> None:
    ada = await app.user("ada")
    first = await app.run(EnsurePersonalProject(user_id=ada.id))
    app.clock.advance(3600)
    again = await app.run(EnsurePersonalProject(user_id=ada.id, name="Another name"))

    assert again == first
    assert (first.name, first.personal, first.owner_id) == (PERSONAL_PROJECT_NAME, True, ada.id)
    assert await app.run(ListProjects(user_id=ada.id)) == [first]
    assert await app.roles(first.id) == {ada.id: OWNER}


async def test_a_shared_project_does_not_count_as_the_personal_one(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    shared = await app.project(bob, (ada, OWNER))
    personal = await app.run(EnsurePersonalProject(user_id=ada.id))
    bobs = await app.run(EnsurePersonalProject(user_id=bob.id))
    assert len({shared.id, personal.id, bobs.id}) == 3
    assert (personal.owner_id, bobs.owner_id) == (ada.id, bob.id)


async def test_a_personal_project_is_ensured_only_for_an_existing_user(app: App) -> None:
    with pytest.raises(UserNotFound, match="User not found"):
        await app.run(EnsurePersonalProject(user_id=uuid.uuid4()))


async def test_a_personal_project_cannot_be_deleted_nor_taken_from_its_owner(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    personal = await app.run(EnsurePersonalProject(user_id=ada.id))
    await app.run(AddMember(user_id=ada.id, project_id=personal.id, email=bob.email, role=OWNER))
    p = personal.id
    refused = [
        DeleteProject(user_id=ada.id, project_id=p),
        DeleteProject(user_id=bob.id, project_id=p),
        ChangeMemberRole(user_id=bob.id, project_id=p, member_id=ada.id, role=VIEWER),
        ChangeMemberRole(user_id=ada.id, project_id=p, member_id=ada.id, role=EDITOR),
        RemoveMember(user_id=bob.id, project_id=p, member_id=ada.id),
        RemoveMember(user_id=ada.id, project_id=p, member_id=ada.id),
    ]
    for command in refused:
        with pytest.raises(PersonalProjectProtected, match="personal project cannot be deleted"):
            await app.run(command)

    assert isinstance(PersonalProjectProtected(), PermissionDenied)
    assert await app.roles(p) == {ada.id: OWNER, bob.id: OWNER}
    renamed = await app.run(RenameProject(user_id=ada.id, project_id=p, name="Ada's notes"))
    assert renamed.personal
    await app.run(RemoveMember(user_id=bob.id, project_id=p, member_id=bob.id))
    assert await app.run(EnsurePersonalProject(user_id=ada.id)) == renamed


# --- property: a project never runs out of owners --------------------------------------------
NAMES = ("u0", "u1", "u2", "u3")
Op = tuple[str, int, str, MemberRole]
operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "change", "remove"]),
        st.integers(0, 9),
        st.sampled_from(NAMES),
        st.sampled_from(MemberRole),
    ),
    max_size=25,
)


def membership_command(op: Op, actor: uuid.UUID, target: User, project_id: uuid.UUID) -> Any:
    kind, _, _, role = op
    if kind == "add":
        return AddMember(user_id=actor, project_id=project_id, email=target.email, role=role)
    if kind == "change":
        return ChangeMemberRole(
            user_id=actor, project_id=project_id, member_id=target.id, role=role
        )
    return RemoveMember(user_id=actor, project_id=project_id, member_id=target.id)


@settings(deadline=None)
@given(operations)
async def test_any_sequence_of_membership_changes_by_owners_keeps_an_owner(ops: list[Op]) -> None:
    app = App()
    users = {name: await app.user(name) for name in NAMES}
    project = await app.project(users["u0"])
    for op in ops:
        owners = sorted(uid for uid, r in (await app.roles(project.id)).items() if r is OWNER)
        actor = owners[op[1] % len(owners)]  # whichever owner the project has by now
        with contextlib.suppress(LastOwner, AlreadyMember, MembershipNotFound):
            await app.run(membership_command(op, actor, users[op[2]], project.id))
        roles = await app.roles(project.id)
        assert OWNER in roles.values()
        assert roles.get((await app.stored(project.id)).owner_id) is OWNER
