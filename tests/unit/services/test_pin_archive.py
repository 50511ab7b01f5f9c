"""Pinning and archiving chats: UpdateChat sets the flags, ListChats filters on them, StartChat
unarchives. Neither flag moves a chat in its project's newest-first list."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from tests.integration.entities import committed_world
from tests.unit.services.test_chats import EDITOR, T0, VIEWER, App
from tests.unit.services.test_start_chat import Sessions, handler
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.chats import Chat
from whalli.domain.model.errors import ChatNotFound, InvalidInput, PermissionDenied
from whalli.domain.services.chat.start_chat import StartChat
from whalli.domain.services.chats.get_chat import GetChat
from whalli.domain.services.chats.list_chats import ListChats
from whalli.domain.services.chats.update_chat import UpdateChat


@pytest.fixture
def app() -> App:
    return App()


def test_archiving_unpins_and_an_archived_chat_cannot_be_pinned() -> None:
    chat = Chat(
        id=uuid.uuid4(), project_id=uuid.uuid4(), user_id=uuid.uuid4(), title="t",
        created_at=T0, updated_at=T0,
    )  # fmt: skip
    later = T0 + timedelta(hours=1)
    chat.pin(True, T0)
    chat.pin(True, later)  # pinned again: the first time stays
    assert (chat.pinned, chat.pinned_at, chat.archived) == (True, T0, False)
    chat.archive(True, later)
    assert (chat.pinned_at, chat.archived_at) == (None, later)
    with pytest.raises(InvalidInput, match="archived chat cannot be pinned") as info:
        chat.pin(True, later)
    assert info.value.details["field"] == "pinned"
    chat.pin(False, later)  # unpinning an archived chat is fine (nothing to do)
    chat.archive(False, later)
    assert (chat.pinned, chat.archived, chat.updated_at) == (False, False, T0)


async def test_an_editor_pins_and_archives_without_moving_the_chat(app: App) -> None:
    ada, eve = await app.user("ada"), await app.user("eve")
    project = await app.project(ada, (eve, EDITOR))
    older = await app.chat(project, ada, at=T0)
    newer = await app.chat(project, ada, at=T0 + timedelta(seconds=1))
    now = app.clock.advance(60)

    pinned = await app.run(UpdateChat(user_id=eve.id, chat_id=older.id, pinned=True))
    assert (pinned.pinned_at, pinned.archived_at, pinned.updated_at) == (now, None, T0)
    page = await app.run(ListChats(user_id=ada.id, project_id=project.id))
    assert [c.id for c in page.items] == [newer.id, older.id]

    later = app.clock.advance(60)
    archived = await app.run(UpdateChat(user_id=eve.id, chat_id=older.id, archived=True))
    assert (archived.pinned_at, archived.archived_at, archived.updated_at) == (None, later, T0)
    assert (await app.run(GetChat(user_id=ada.id, chat_id=older.id))).chat == archived

    back = await app.run(UpdateChat(user_id=eve.id, chat_id=older.id, archived=False))
    assert (back.pinned, back.archived, back.updated_at) == (False, False, T0)


async def test_flags_combine_with_a_rename_which_still_moves_the_chat(app: App) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    now = app.clock.advance(60)

    both = await app.run(UpdateChat(user_id=ada.id, chat_id=chat.id, title="Kept", pinned=True))
    assert (both.title, both.pinned_at, both.updated_at) == ("Kept", now, now)

    with pytest.raises(InvalidInput, match="archived chat cannot be pinned"):
        await app.run(UpdateChat(user_id=ada.id, chat_id=chat.id, pinned=True, archived=True))
    assert (await app.run(GetChat(user_id=ada.id, chat_id=chat.id))).chat == both  # rolled back

    await app.run(UpdateChat(user_id=ada.id, chat_id=chat.id, archived=True))
    revived = await app.run(
        UpdateChat(user_id=ada.id, chat_id=chat.id, pinned=True, archived=False)
    )
    assert (revived.pinned, revived.archived) == (True, False)


@pytest.mark.parametrize(("pinned", "archived"), [(True, None), (None, True), (False, None)])
async def test_a_viewer_gets_permission_denied_and_a_stranger_not_found(
    app: App, pinned: bool | None, archived: bool | None
) -> None:
    ada, vic, bob = await app.user("ada"), await app.user("vic"), await app.user("bob")
    chat = await app.chat(await app.project(ada, (vic, VIEWER)), ada)

    with pytest.raises(PermissionDenied, match="write access needed"):
        await app.run(UpdateChat(user_id=vic.id, chat_id=chat.id, pinned=pinned, archived=archived))
    with pytest.raises(ChatNotFound, match="not found"):
        await app.run(UpdateChat(user_id=bob.id, chat_id=chat.id, pinned=pinned, archived=archived))

    assert (await app.run(GetChat(user_id=ada.id, chat_id=chat.id))).chat == chat


async def test_the_list_leaves_archived_chats_out_unless_asked_and_filters_pinned(
    app: App,
) -> None:
    ada = await app.user("ada")
    project = await app.project(ada)
    chats = [await app.chat(project, ada, at=T0 + timedelta(seconds=s)) for s in range(6)]
    for chat in chats[0:2]:
        await app.run(UpdateChat(user_id=ada.id, chat_id=chat.id, archived=True))
    for chat in chats[2:4]:
        await app.run(UpdateChat(user_id=ada.id, chat_id=chat.id, pinned=True))

    async def ids(**filters: bool) -> list[uuid.UUID]:
        found = []
        cursor = None
        while True:  # pages of 1: the cursor walks the filtered list
            page = await app.run(ListChats(
                user_id=ada.id, project_id=project.id, limit=1, cursor=cursor, **filters
            ))  # fmt: skip
            found += [c.id for c in page.items]
            if (cursor := page.next_cursor) is None:
                return found

    newest_first = [c.id for c in reversed(chats)]
    assert await ids() == await ids(archived=False) == newest_first[:4]
    assert await ids(archived=True) == newest_first[4:]
    assert await ids(pinned=True) == newest_first[2:4]
    assert await ids(pinned=False) == newest_first[:2]
    assert await ids(archived=True, pinned=True) == []


async def test_a_new_message_in_an_archived_chat_unarchives_it() -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    world = await committed_world(InMemoryUnitOfWork(store))
    async with InMemoryUnitOfWork(store) as uow:
        chat = await uow.chats.get(world.chat.id)
        chat.archive(True, T0)
        await uow.chats.update(chat)
        await uow.commit()
    now = clock.advance(timedelta(days=3))

    await handler(InMemoryUnitOfWork(store), Sessions(clock), clock).execute(
        StartChat(user_id=world.user.id, model="dev/echo", message="again", chat_id=chat.id)
    )

    async with InMemoryUnitOfWork(store) as uow:
        found = await uow.chats.get(chat.id)
    assert (found.archived_at, found.updated_at) == (None, now)
