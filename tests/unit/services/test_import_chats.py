"""ImportChats on the in-memory unit of work: where the chats go, who may import, the limits,
and all or nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.services.test_chats import EDITOR, T0, VIEWER, App
from tests.unit.test_chatgpt_export import T, conversation, lisbon, message
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.chat_imports import MAX_CONVERSATIONS, MAX_MESSAGES
from whalli.domain.model.chats import MESSAGE_MAX, MessageRole
from whalli.domain.model.errors import (
    Conflict,
    ImportTooLarge,
    InvalidInput,
    PermissionDenied,
    ProjectNotFound,
)
from whalli.domain.model.users import User
from whalli.domain.services.chats.get_chat import GetChat
from whalli.domain.services.chats.import_chats import (
    ImportChats,
    ImportChatsHandler,
    ImportResult,
)
from whalli.domain.services.chats.list_chats import ListChats
from whalli.domain.services.chats.search_chats import SearchChats
from whalli.domain.services.projects.ensure_personal_project import EnsurePersonalProject


class ImportApp(App):
    def __init__(self) -> None:
        super().__init__()
        self._handlers[ImportChats] = lambda: ImportChatsHandler(self.uow(), self.clock, self.ids)

    async def person(self, name: str) -> User:
        user = await self.user(name)
        await self.run(EnsurePersonalProject(user_id=user.id, name="Personal"))
        return user

    async def chat_count(self) -> tuple[int, int]:
        return len(self.store.tables["chats"]), len(self.store.tables["messages"])


@pytest.fixture
def app() -> ImportApp:
    return ImportApp()


def chatgpt(user: User, conversations: Any, **kwargs: Any) -> ImportChats:
    return ImportChats(user_id=user.id, format="chatgpt", conversations=conversations, **kwargs)


def short(text: str, at: float = T) -> dict[str, Any]:
    return conversation([("u", None, message("user", text, at=at))], current="u", title="")


async def test_conversations_become_chats_in_the_personal_project_found_by_search(
    app: ImportApp,
) -> None:
    ada = await app.person("ada")
    empty = conversation([("root", None, None)], current="root", title="Nothing")
    result: ImportResult = await app.run(chatgpt(ada, [lisbon(), empty, short("tides explained")]))

    assert [(c.title, c.messages) for c in result.imported] == [
        ("Trip to Lisbon", 4), ("tides explained", 1),
    ]  # fmt: skip
    assert [(s.index, s.title) for s in result.skipped] == [(1, "Nothing")]
    page = await app.run(ListChats(user_id=ada.id))
    assert {c.id for c in page.items} == {c.chat_id for c in result.imported}
    found = await app.run(GetChat(user_id=ada.id, chat_id=result.imported[0].chat_id))
    assert [m.role for m in found.messages] == [MessageRole.USER, MessageRole.ASSISTANT] * 2
    assert found.messages[-1].content == "Try bacalhau — 🐟"
    assert found.chat.created_at < T0
    assert found.chat.user_id == ada.id
    hits = await app.run(SearchChats(user_id=ada.id, q="bacalhau"))
    assert [h.chat_id for h in hits] == [result.imported[0].chat_id]


async def test_an_editor_imports_into_a_shared_project_a_viewer_and_a_stranger_cannot(
    app: ImportApp,
) -> None:
    ada, eve, vic, sam = [await app.person(n) for n in ("ada", "eve", "vic", "sam")]
    project = await app.project(ada, (eve, EDITOR), (vic, VIEWER))

    result = await app.run(chatgpt(eve, [lisbon()], project_id=project.id))
    page = await app.run(ListChats(user_id=ada.id, project_id=project.id))
    assert [c.id for c in page.items] == [result.imported[0].chat_id]

    with pytest.raises(PermissionDenied, match="viewer"):
        await app.run(chatgpt(vic, [lisbon()], project_id=project.id))
    with pytest.raises(ProjectNotFound, match="Project not found"):
        await app.run(chatgpt(sam, [lisbon()], project_id=project.id))
    assert await app.chat_count() == (1, 4)


async def test_an_unknown_format_or_a_document_that_is_not_a_list_is_refused(
    app: ImportApp,
) -> None:
    ada = await app.person("ada")
    with pytest.raises(InvalidInput, match="Unknown import format; known: chatgpt"):
        await app.run(ImportChats(user_id=ada.id, format="claude", conversations=[lisbon()]))
    with pytest.raises(InvalidInput, match="JSON array of conversations"):
        await app.run(chatgpt(ada, {"conversations": [lisbon()]}))
    assert await app.chat_count() == (0, 0)


async def test_too_many_conversations_are_refused_before_anything_is_written(
    app: ImportApp,
) -> None:
    ada = await app.person("ada")
    with pytest.raises(ImportTooLarge, match=f"at most {MAX_CONVERSATIONS} conversations"):
        await app.run(chatgpt(ada, [short("hi")] * (MAX_CONVERSATIONS + 1)))
    result = await app.run(chatgpt(ada, [short("hi")] * MAX_CONVERSATIONS))
    assert len(result.imported) == MAX_CONVERSATIONS


def thread(count: int) -> dict[str, Any]:
    """A conversation of ``count`` messages, user and assistant in turn."""
    nodes = [
        (f"n{i}", f"n{i - 1}" if i else None,
         message("assistant" if i % 2 else "user", f"m{i}", at=T + i))
        for i in range(count)
    ]  # fmt: skip
    return conversation(nodes, current=f"n{count - 1}")


async def test_too_many_messages_or_a_too_long_message_is_refused(app: ImportApp) -> None:
    ada = await app.person("ada")
    half = MAX_MESSAGES // 2
    with pytest.raises(ImportTooLarge, match=f"at most {MAX_MESSAGES} messages"):
        await app.run(chatgpt(ada, [thread(half + 1), thread(half)]))
    long = short("x" * (MESSAGE_MAX + 1))
    with pytest.raises(InvalidInput, match=f"Conversation 1 has a message of {MESSAGE_MAX + 1}"):
        await app.run(chatgpt(ada, [lisbon(), long]))
    assert await app.chat_count() == (0, 0)
    result = await app.run(chatgpt(ada, [thread(half - 1), thread(half), short("x" * MESSAGE_MAX)]))
    assert [c.messages for c in result.imported] == [half - 1, half, 1]


async def test_one_failing_write_leaves_no_chat_at_all(
    app: ImportApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = await app.person("ada")
    writes = 0
    add = app.uow().chats.add_with_messages.__func__  # type: ignore[attr-defined]

    async def failing_second(self: Any, chat: Any, messages: Any) -> None:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise Conflict("This id is already taken.")
        await add(self, chat, messages)

    repository = type(InMemoryUnitOfWork(app.store).chats)
    monkeypatch.setattr(repository, "add_with_messages", failing_second)
    with pytest.raises(Conflict, match="already taken"):
        await app.run(chatgpt(ada, [lisbon(), lisbon(), lisbon()]))
    assert writes == 2
    assert await app.chat_count() == (0, 0)


async def test_nothing_to_import_answers_every_skip_and_writes_nothing(app: ImportApp) -> None:
    ada = await app.person("ada")
    result = await app.run(chatgpt(ada, [None, {"title": "x"}]))
    assert result.imported == []
    assert [(s.index, s.title, s.reason) for s in result.skipped] == [
        (0, None, "not a conversation object"), (1, "x", "it has no messages (no mapping)"),
    ]  # fmt: skip
    assert await app.chat_count() == (0, 0)
