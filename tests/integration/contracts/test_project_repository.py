"""Contract of ProjectRepository (projects and memberships), in memory and on Postgres."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from whalli.domain.model.errors import (
    AlreadyMember,
    AttachmentNotFound,
    ChatNotFound,
    MembershipNotFound,
    MessageNotFound,
    ProjectNotFound,
    SearchSubscriptionNotFound,
    UserNotFound,
)
from whalli.domain.model.projects import MemberRole

from ..conftest import UowFactory
from ..entities import (
    a_membership,
    a_message,
    a_project,
    a_result,
    a_subscription,
    a_user,
    an_attachment,
    at,
    committed_world,
)


async def test_a_project_reads_back_equal(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        assert await uow.projects.get(world.project.id) == world.project


async def test_an_unknown_project_is_not_found(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(ProjectNotFound, match="Project not found"):
            await uow.projects.get(uuid.uuid4())
        with pytest.raises(ProjectNotFound, match="Project not found"):
            await uow.projects.get_for_update(uuid.uuid4())
        with pytest.raises(ProjectNotFound, match="Project not found"):
            await uow.projects.update(a_project(a_user()))
        with pytest.raises(ProjectNotFound, match="Project not found"):
            await uow.projects.delete(uuid.uuid4())


async def test_a_project_needs_an_existing_owner(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.projects.add(a_project(a_user()))


async def test_a_renamed_project_is_persisted(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    world.project.rename("Renamed", at(60))
    async with uow_factory() as uow:
        await uow.projects.update(world.project)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.projects.get(world.project.id) == world.project


async def test_deleting_a_project_deletes_everything_in_it(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    message = a_message(world.chat)
    attachment = an_attachment(world.project, world.user)
    subscription = a_subscription(world.project, world.user)
    async with uow_factory() as uow:
        await uow.chats.add_message(message)
        await uow.attachments.add(attachment)
        await uow.searches.add(subscription)
        await uow.searches.add_results([a_result(subscription, "https://example.org/a")])
        await uow.commit()

    async with uow_factory() as uow:
        await uow.projects.delete(world.project.id)
        await uow.commit()

    async with uow_factory() as uow:
        with pytest.raises(ChatNotFound, match="Chat not found"):
            await uow.chats.get(world.chat.id)
        with pytest.raises(MessageNotFound, match="Message not found"):
            await uow.chats.get_message(message.id)
        with pytest.raises(AttachmentNotFound, match="File not found"):
            await uow.attachments.get(attachment.id)
        with pytest.raises(SearchSubscriptionNotFound, match="Search subscription not found"):
            await uow.searches.get(subscription.id)
        assert await uow.searches.list_results(subscription.id) == []
        assert await uow.projects.list_members(world.project.id) == []
        assert await uow.projects.list_for_user(world.user.id) == []
        assert await uow.users.get(world.user.id) == world.user


async def test_list_for_user_returns_the_projects_they_belong_to_oldest_first(
    uow_factory: UowFactory,
) -> None:
    owner, member = a_user(), a_user()
    newer, older, foreign = (a_project(owner, now=at(s)) for s in (20, 10, 30))
    async with uow_factory() as uow:
        await uow.users.add(owner)
        await uow.users.add(member)
        for project in (newer, older, foreign):
            await uow.projects.add(project)
        await uow.projects.add_member(a_membership(newer, member))
        await uow.projects.add_member(a_membership(older, member, MemberRole.VIEWER))
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.projects.list_for_user(member.id) == [older, newer]


async def test_members_are_added_read_updated_listed_and_removed(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    editor = a_user()
    membership = a_membership(world.project, editor)
    async with uow_factory() as uow:
        await uow.users.add(editor)
        await uow.projects.add_member(membership)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.projects.get_membership(world.project.id, editor.id) == membership
        promoted = a_membership(world.project, editor, MemberRole.OWNER)
        await uow.projects.update_member(promoted)
        await uow.commit()

    async with uow_factory() as uow:
        members = await uow.projects.list_members(world.project.id)
        assert {(m.user_id, m.role) for m in members} == {
            (world.user.id, MemberRole.OWNER), (editor.id, MemberRole.OWNER),
        }  # fmt: skip
        await uow.projects.remove_member(world.project.id, editor.id)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.projects.get_membership(world.project.id, editor.id) is None
        assert [m.user_id for m in await uow.projects.list_members(world.project.id)] == [
            world.user.id
        ]


async def test_members_are_listed_in_the_order_they_joined(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    later, earlier = a_user(), a_user()
    async with uow_factory() as uow:
        for user in (later, earlier):
            await uow.users.add(user)
        late = msgspec.structs.replace(a_membership(world.project, later), created_at=at(20))
        early = msgspec.structs.replace(a_membership(world.project, earlier), created_at=at(10))
        await uow.projects.add_member(late)
        await uow.projects.add_member(early)
        listed = await uow.projects.list_members(world.project.id)

    assert [m.user_id for m in listed] == [world.user.id, earlier.id, later.id]


async def test_adding_a_member_twice_is_refused_and_the_work_can_go_on(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    viewer = a_user()
    async with uow_factory() as uow:
        with pytest.raises(AlreadyMember, match="already a member"):
            await uow.projects.add_member(a_membership(world.project, world.user))
        await uow.users.add(viewer)
        await uow.projects.add_member(a_membership(world.project, viewer, MemberRole.VIEWER))
        await uow.commit()

    async with uow_factory() as uow:
        kept = await uow.projects.get_membership(world.project.id, world.user.id)
        assert kept is not None
        assert kept.role is MemberRole.OWNER
        assert await uow.projects.get_membership(world.project.id, viewer.id) is not None


async def test_changing_or_removing_a_missing_member_is_not_found(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    stranger = a_user()
    async with uow_factory() as uow:
        assert await uow.projects.get_membership(world.project.id, stranger.id) is None
        with pytest.raises(MembershipNotFound, match="Member not found"):
            await uow.projects.update_member(a_membership(world.project, stranger))
        with pytest.raises(MembershipNotFound, match="Member not found"):
            await uow.projects.remove_member(world.project.id, stranger.id)


async def test_a_member_must_be_an_existing_user(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.projects.add_member(a_membership(world.project, a_user()))


async def test_get_for_update_lets_one_unit_of_work_at_a_time_change_a_project(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())

    async def rename(n: int) -> None:
        async with uow_factory() as uow:
            locked = await uow.projects.get_for_update(world.project.id)
            await asyncio.sleep(0)  # let the others reach the lock
            locked.rename(f"{locked.name} {n}", at(n))
            await uow.projects.update(locked)
            await uow.commit()

    await asyncio.gather(*(rename(n) for n in range(5)))

    async with uow_factory() as uow:
        stored = await uow.projects.get(world.project.id)
    assert sorted(stored.name.split()[1:]) == ["0", "1", "2", "3", "4"]


async def test_a_project_lock_is_released_when_the_unit_of_work_ends(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        await uow.projects.get_for_update(world.project.id)
        await uow.projects.get_for_update(world.project.id)  # the holder may lock again
    async with uow_factory() as uow:
        assert await uow.projects.get_for_update(world.project.id) == world.project
