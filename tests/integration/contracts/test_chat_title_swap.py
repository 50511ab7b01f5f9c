"""Contract of ChatRepository.set_title_if (the automatic title's compare-and-set), in memory
and on Postgres."""

from __future__ import annotations

from ..conftest import UowFactory
from ..entities import a_chat, at, committed_world


async def test_the_title_is_set_only_while_it_is_still_the_expected_one(
    uow_factory: UowFactory,
) -> None:
    world = await committed_world(uow_factory())
    before = world.chat
    async with uow_factory() as uow:
        assert await uow.chats.set_title_if(before.id, expected="Hi", title="Greetings")
        await uow.commit()
    async with uow_factory() as uow:
        stored = await uow.chats.get(before.id)
        assert stored.title == "Greetings"
        # nothing else changed: not an update, the chat keeps its place in the list
        assert stored.updated_at == before.updated_at
        assert (stored.system_prompt, stored.pinned_at) == (before.system_prompt, None)
        assert not await uow.chats.set_title_if(before.id, expected="Hi", title="Again")
    async with uow_factory() as uow:
        assert (await uow.chats.get(before.id)).title == "Greetings"


async def test_a_rename_committed_first_wins(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        chat = await uow.chats.get(world.chat.id)
        chat.rename("Mine", at(3))
        await uow.chats.update(chat)
        await uow.commit()
    async with uow_factory() as uow:
        assert not await uow.chats.set_title_if(chat.id, expected="Hi", title="Model's")
        await uow.commit()
    async with uow_factory() as uow:
        assert (await uow.chats.get(chat.id)).title == "Mine"


async def test_a_title_set_without_commit_is_rolled_back(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        assert await uow.chats.set_title_if(world.chat.id, expected="Hi", title="Lost")
    async with uow_factory() as uow:
        assert (await uow.chats.get(world.chat.id)).title == "Hi"


async def test_a_missing_chat_gets_no_title(uow_factory: UowFactory) -> None:
    world = await committed_world(uow_factory())
    ghost = a_chat(world.project, world.user)
    async with uow_factory() as uow:
        assert not await uow.chats.set_title_if(ghost.id, expected="Hi", title="Nobody")
