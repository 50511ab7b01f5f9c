"""Contract of what deleting an account needs of the repositories (``UserRepository.delete`` and
``get_for_delete``, ``ProjectRepository.list_owned``, ``AttachmentRepository.
object_keys_for_user``), on the in-memory and the Postgres unit of work."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from whalli.domain.model.errors import Conflict, UserNotFound
from whalli.domain.model.projects import MemberRole
from whalli.domain.model.users import User
from whalli.ports.usage import UsageRecord

from ..conftest import UowFactory
from ..entities import (
    a_chat,
    a_membership,
    a_message,
    a_project,
    a_refresh_token,
    a_user,
    an_attachment,
    at,
    committed_world,
)


async def _users(uow_factory: UowFactory, *users: User) -> None:
    async with uow_factory() as uow:
        for user in users:
            await uow.users.add(user)
        await uow.commit()


async def test_list_owned_lists_the_projects_a_user_owns_oldest_first_not_those_they_joined(
    uow_factory: UowFactory,
) -> None:
    ada, bob = a_user(), a_user()
    older, newer = a_project(ada, now=at(0)), a_project(ada, now=at(60))
    bobs = a_project(bob)
    await _users(uow_factory, ada, bob)
    async with uow_factory() as uow:
        for project in (newer, older, bobs):
            await uow.projects.add(project)
        await uow.projects.add_member(a_membership(bobs, ada, MemberRole.OWNER))
        await uow.commit()

    async with uow_factory() as uow:
        assert [p.id for p in await uow.projects.list_owned(ada.id)] == [older.id, newer.id]
        assert [p.id for p in await uow.projects.list_owned(bob.id)] == [bobs.id]
        assert await uow.projects.list_owned(uuid.uuid4()) == []


async def test_object_keys_for_user_are_those_of_every_file_they_uploaded_anywhere(
    uow_factory: UowFactory,
) -> None:
    ada, bob = a_user(), a_user()
    adas, bobs = a_project(ada), a_project(bob)
    mine_here, mine_there = an_attachment(adas, ada), an_attachment(bobs, ada)
    his = an_attachment(bobs, bob)
    await _users(uow_factory, ada, bob)
    async with uow_factory() as uow:
        await uow.projects.add(adas)
        await uow.projects.add(bobs)
        for attachment in (mine_here, mine_there, his):
            await uow.attachments.add(attachment)
        await uow.commit()

    async with uow_factory() as uow:
        assert sorted(await uow.attachments.object_keys_for_user(ada.id)) == sorted(
            [mine_here.object_key, mine_there.object_key]
        )
        assert await uow.attachments.object_keys_for_user(bob.id) == [his.object_key]
        assert await uow.attachments.object_keys_for_user(uuid.uuid4()) == []


async def test_deleting_a_user_deletes_every_row_referring_to_them_and_nobody_elses(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())  # bob's project, where ada works too
    bob = world.user
    ada = a_user()
    adas_chat = a_chat(world.project, ada)
    adas_file = an_attachment(world.project, ada)
    adas_token = a_refresh_token(ada)
    bobs_message = a_message(world.chat)
    usage = UsageRecord(
        id=uuid.uuid4(), user_id=ada.id, message_id=None, model="dev/echo", provider="dev",
        prompt_tokens=1, completion_tokens=1, cost_usd=0.0, cached=False, created_at=at(0),
    )  # fmt: skip
    await _users(uow_factory, ada)
    async with uow_factory() as uow:
        await uow.projects.add_member(a_membership(world.project, ada))
        await uow.chats.add(adas_chat)
        await uow.chats.add_message(bobs_message)
        await uow.attachments.add(adas_file)
        await uow.refresh_tokens.add(adas_token)
        await uow.usage.add(usage)
        await uow.commit()

    async with uow_factory() as uow:
        await uow.users.delete(ada.id)
        await uow.commit()

    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="not found"):
            await uow.users.get(ada.id)
        assert await uow.projects.get_membership(world.project.id, ada.id) is None
        assert [m.user_id for m in await uow.projects.list_members(world.project.id)] == [bob.id]
        assert await uow.attachments.object_keys_for_user(ada.id) == []
        assert not await uow.refresh_tokens.family_is_active(adas_token.family_id, at(1))
        assert (await uow.usage.totals(ada.id, since=at(-60))).requests == 0
        assert await uow.users.get(bob.id) == bob
        assert await uow.chats.get(world.chat.id) == world.chat
        assert [m.id for m in await uow.chats.list_messages(world.chat.id)] == [bobs_message.id]


async def test_a_user_who_still_owns_a_project_is_not_deleted(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())

    async with uow_factory() as uow:
        with pytest.raises(Conflict, match="still"):
            await uow.users.delete(world.user.id)
    async with uow_factory() as uow:
        assert await uow.users.get(world.user.id) == world.user

    async with uow_factory() as uow:  # once its projects are gone, it goes
        await uow.projects.delete(world.project.id)
        await uow.users.delete(world.user.id)
        await uow.commit()
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="not found"):
            await uow.users.get(world.user.id)


async def test_deleting_an_unknown_user_is_not_found(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="not found"):
            await uow.users.delete(uuid.uuid4())
        with pytest.raises(UserNotFound, match="not found"):
            await uow.users.get_for_delete(uuid.uuid4())


async def test_a_deletion_not_committed_is_rolled_back(uow_factory: UowFactory) -> None:
    user = a_user()
    await _users(uow_factory, user)

    async with uow_factory() as uow:
        assert await uow.users.get_for_delete(user.id) == user
        await uow.users.delete(user.id)

    async with uow_factory() as uow:
        assert await uow.users.get(user.id) == user


async def test_a_row_added_for_a_user_held_for_deletion_does_not_outlive_them(
    uow_factory: UowFactory, request: pytest.FixtureRequest
) -> None:
    """In Postgres the insert waits for the deletion, then finds the user gone; either way no
    row is left pointing at a deleted account."""
    user = a_user()
    token = a_refresh_token(user)
    await _users(uow_factory, user)

    async def open_session() -> None:
        async with uow_factory() as uow:
            await uow.refresh_tokens.add(token)
            await uow.commit()

    async with uow_factory() as holder:
        await holder.users.get_for_delete(user.id)
        late = asyncio.create_task(open_session())
        for _ in range(20):  # give the insert every chance to get past the lock if it could
            await asyncio.sleep(0.01)
        if request.node.callspec.params["uow_factory"] != "memory":
            assert not late.done()  # held off by the lock
        await holder.users.delete(user.id)
        await holder.commit()
    outcome = (await asyncio.gather(late, return_exceptions=True))[0]

    if request.node.callspec.params["uow_factory"] != "memory":
        assert isinstance(outcome, UserNotFound)
    async with uow_factory() as uow:
        assert not await uow.refresh_tokens.family_is_active(token.family_id, at(1))
        assert await uow.refresh_tokens.owner_of(token.token_hash) is None
