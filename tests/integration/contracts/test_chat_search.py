"""Contract of ChatSearch (full-text search over the chats a user can read), fake and Postgres."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from whalli.adapters.memory.chat_search import InMemoryChatSearch
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.postgres.chat_search import PostgresChatSearch
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.domain.model.chats import Chat
from whalli.domain.model.projects import MemberRole
from whalli.ports.chat_search import ChatSearch

from ..conftest import UowFactory
from ..entities import World, a_chat, a_membership, a_message, a_user, at, committed_world

Backend = tuple[UowFactory, ChatSearch]


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        store = MemoryStore()
        return (lambda: InMemoryUnitOfWork(store)), InMemoryChatSearch(store)
    pool: PostgresPool = request.getfixturevalue("pg_pool")
    return (lambda: PostgresUnitOfWork(pool)), PostgresChatSearch(pool)


@pytest.fixture
def word(unique: str) -> str:
    """A word no other test's chats contain (tests share one database)."""
    return f"zebra{unique}"


AddMessages = Callable[[Chat, list[str]], Awaitable[None]]


@pytest.fixture
def add_messages(backend: Backend) -> AddMessages:
    uow_factory, _ = backend

    async def _add(chat: Chat, contents: list[str]) -> None:
        async with uow_factory() as uow:
            for i, content in enumerate(contents):
                await uow.chats.add_message(a_message(chat, now=at(i), content=content))
            await uow.commit()

    return _add


async def test_words_of_a_message_find_its_chat_in_any_order_and_case(
    backend: Backend, add_messages: AddMessages, word: str
) -> None:
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    await add_messages(world.chat, ["Nothing here.", f"The quick brown {word.upper()} jumps."])

    hits = await search.search(world.user.id, f"jumps {word}")

    assert [(h.chat_id, h.project_id, h.title) for h in hits] == [
        (world.chat.id, world.project.id, world.chat.title)
    ]
    assert word.upper() in hits[0].snippet
    assert "«" not in hits[0].snippet


async def test_words_of_the_title_find_the_chat(backend: Backend, word: str) -> None:
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        world.chat.rename(f"Planning the {word} trip", at(1))
        await uow.chats.update(world.chat)
        await uow.commit()

    hits = await search.search(world.user.id, f"{word} TRIP")

    assert [h.chat_id for h in hits] == [world.chat.id]


async def test_every_word_must_match(
    backend: Backend, add_messages: AddMessages, word: str
) -> None:
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    await add_messages(world.chat, [f"only {word} here"])

    assert await search.search(world.user.id, f"{word} elephant{word}") == []


async def test_a_chat_is_found_once_however_many_messages_match(
    backend: Backend, add_messages: AddMessages, word: str
) -> None:
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    async with uow_factory() as uow:
        world.chat.rename(f"About {word}", at(1))
        await uow.chats.update(world.chat)
        await uow.commit()
    await add_messages(world.chat, [f"{word} one", f"{word} two", f"{word} {word} three"])

    hits = await search.search(world.user.id, word)

    assert [h.chat_id for h in hits] == [world.chat.id]
    assert word in hits[0].snippet


async def test_a_title_match_ranks_above_a_message_match_and_limit_applies(
    backend: Backend, add_messages: AddMessages, word: str
) -> None:
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    titled = a_chat(world.project, world.user, now=at(-10))
    titled.rename(f"All about {word}", at(-10))
    others = [a_chat(world.project, world.user, now=at(i)) for i in range(3)]
    async with uow_factory() as uow:
        for chat in [titled, *others]:
            await uow.chats.add(chat)
        await uow.commit()
    for chat in others:
        await add_messages(chat, [f"a message that mentions {word} once among many other words"])

    hits = await search.search(world.user.id, word, limit=2)

    assert len(hits) == 2
    assert hits[0].chat_id == titled.id
    assert hits[0].rank > hits[1].rank
    assert hits[1].chat_id in {c.id for c in others}


async def test_chats_of_projects_the_user_is_not_a_member_of_are_never_found(
    backend: Backend, add_messages: AddMessages, word: str
) -> None:
    uow_factory, search = backend
    mine, theirs = await committed_world(uow_factory()), await committed_world(uow_factory())
    await add_messages(mine.chat, [f"shared {word} words"])
    await add_messages(theirs.chat, [f"shared {word} words"])

    assert [h.chat_id for h in await search.search(mine.user.id, word)] == [mine.chat.id]
    assert [h.chat_id for h in await search.search(theirs.user.id, word)] == [theirs.chat.id]


async def test_a_member_finds_the_projects_chats_until_removed(
    backend: Backend, add_messages: AddMessages, word: str
) -> None:
    uow_factory, search = backend
    world: World = await committed_world(uow_factory())
    await add_messages(world.chat, [f"team {word} notes"])
    viewer = a_user()
    async with uow_factory() as uow:
        await uow.users.add(viewer)
        await uow.projects.add_member(a_membership(world.project, viewer, MemberRole.VIEWER))
        await uow.commit()

    assert [h.chat_id for h in await search.search(viewer.id, word)] == [world.chat.id]

    async with uow_factory() as uow:
        await uow.projects.remove_member(world.project.id, viewer.id)
        await uow.commit()

    assert await search.search(viewer.id, word) == []


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
async def test_a_blank_query_finds_nothing(
    backend: Backend, add_messages: AddMessages, query: str
) -> None:
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    await add_messages(world.chat, ["anything at all"])

    assert await search.search(world.user.id, query) == []


async def test_special_characters_in_the_query_never_raise(
    backend: Backend, add_messages: AddMessages, word: str
) -> None:
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    await add_messages(world.chat, [f"the {word} fox"])

    for query in (
        f"{word} & fox",
        f"{word} | fox",
        f"!{word}",
        f"{word}:*",
        f'"{word}',
        f"({word})",
    ):
        assert [h.chat_id for h in await search.search(world.user.id, query)] == [world.chat.id]
    for query in ("&", "|", "!", ":*", "'", '"', "&|!:*", "<->", "(", ")", "\\", "a\x00b", "%_"):
        assert isinstance(await search.search(world.user.id, query), list)


async def test_archived_chats_are_found_and_every_hit_shows_its_flags(
    backend: Backend, add_messages: AddMessages, word: str
) -> None:
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    pinned, archived = a_chat(world.project, world.user), a_chat(world.project, world.user)
    pinned.pin(True, at(1))
    archived.archive(True, at(1))
    async with uow_factory() as uow:
        await uow.chats.add(pinned)
        await uow.chats.add(archived)
        await uow.commit()
    for chat in (world.chat, pinned, archived):
        await add_messages(chat, [f"about {word}"])

    hits = await search.search(world.user.id, word)

    assert {(h.chat_id, h.pinned, h.archived) for h in hits} == {
        (world.chat.id, False, False), (pinned.id, True, False), (archived.id, False, True),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("sentence", "inner"),
    [
        ("我喜欢北京烤鸭。", "北京"),
        ("東京タワーに行きました", "タワー"),
        ("서울에서 만나요", "서울"),
    ],
)
async def test_a_word_inside_a_sentence_written_without_spaces_finds_its_chat(
    backend: Backend, add_messages: AddMessages, word: str, sentence: str, inner: str
) -> None:
    """Chinese and Japanese put no spaces between words (Korean attaches particles): a word
    found inside such a sentence finds its chat, and the snippet shows the text as written."""
    uow_factory, search = backend
    world = await committed_world(uow_factory())
    await add_messages(world.chat, [f"{word} {sentence} Mixed with English."])

    hits = await search.search(world.user.id, f"{inner} {word}")

    assert [h.chat_id for h in hits] == [world.chat.id]
    assert sentence in hits[0].snippet
    assert "English" in hits[0].snippet
    assert await search.search(world.user.id, f"{inner}京都 {word}") == []
