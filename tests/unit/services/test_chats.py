"""Chat use cases on the in-memory unit of work: pages, cursors, access, rename, delete, search."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whalli.adapters.crypto.stream_passes import HmacStreamPasses
from whalli.adapters.memory.chat_search import InMemoryChatSearch
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import Chat, Message, MessageRole, MessageStatus, TokenUsage
from whalli.domain.model.errors import (
    ChatNotFound,
    InvalidInput,
    PermissionDenied,
    ProjectNotFound,
    ServiceUnavailable,
)
from whalli.domain.model.projects import MemberRole, Project
from whalli.domain.model.users import User
from whalli.domain.services.chats.cursor import decode_cursor, encode_cursor
from whalli.domain.services.chats.delete_chat import DeleteChat, DeleteChatHandler
from whalli.domain.services.chats.get_chat import ChatWithMessages, GetChat, GetChatHandler
from whalli.domain.services.chats.list_chats import ChatPage, ListChats, ListChatsHandler
from whalli.domain.services.chats.search_chats import SearchChats, SearchChatsHandler
from whalli.domain.services.chats.update_chat import UpdateChat, UpdateChatHandler
from whalli.domain.services.projects.add_member import AddMember, AddMemberHandler
from whalli.domain.services.projects.create_project import CreateProject, CreateProjectHandler
from whalli.domain.services.projects.ensure_personal_project import (
    EnsurePersonalProject,
    EnsurePersonalProjectHandler,
)
from whalli.ports.chat_sessions import ChatSessionStore

EDITOR, VIEWER = MemberRole.EDITOR, MemberRole.VIEWER
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class App:
    """The use cases over one in-memory store; each call gets a fresh unit of work."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock(T0)
        self.ids = SequentialIds()
        self.sessions = InMemoryChatSessionStore(self.clock)
        self.passes = HmacStreamPasses("a test secret for reader passes, 32+ bytes")
        self._handlers: dict[type, Callable[[], Any]] = {
            CreateProject: lambda: CreateProjectHandler(self.uow(), self.clock, self.ids),
            AddMember: lambda: AddMemberHandler(self.uow(), self.clock),
            EnsurePersonalProject: lambda: EnsurePersonalProjectHandler(self.uow(), self.clock),
            ListChats: lambda: ListChatsHandler(self.uow()),
            GetChat: lambda: GetChatHandler(self.uow(), self.sessions, self.passes, self.clock),
            UpdateChat: lambda: UpdateChatHandler(self.uow(), self.clock),
            DeleteChat: lambda: DeleteChatHandler(self.uow()),
            SearchChats: lambda: SearchChatsHandler(InMemoryChatSearch(self.store)),
        }

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    def passes_shown(self, found: ChatWithMessages) -> dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID]]:
        """reply id -> (the reply, the reader) each reader pass a chat read showed names."""
        opened = {r: self.passes.open(p, self.clock.now()) for r, p in found.live_sessions.items()}
        return {r: (g.reply_message_id, g.user_id) for r, g in opened.items() if g is not None}

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

    async def chat(
        self, project: Project, author: User, title: str = "A chat", *, at: datetime = T0
    ) -> Chat:
        chat = Chat(
            id=self.ids.new_id(), project_id=project.id, user_id=author.id, title=title,
            created_at=at, updated_at=at,
        )  # fmt: skip
        async with self.uow() as uow:
            await uow.chats.add(chat)
            await uow.commit()
        return chat

    async def message(self, chat: Chat, content: str, role: MessageRole, at: datetime) -> Message:
        message = Message(
            id=self.ids.new_id(), chat_id=chat.id, role=role, content=content, created_at=at,
            updated_at=at,
        )  # fmt: skip
        async with self.uow() as uow:
            await uow.chats.add_message(message)
            await uow.commit()
        return message

    async def all_pages(self, user: User, project: Project | None, limit: int) -> list[ChatPage]:
        pages: list[ChatPage] = []
        cursor: str | None = None
        while True:
            page: ChatPage = await self.run(ListChats(
                user_id=user.id, project_id=None if project is None else project.id,
                limit=limit, cursor=cursor,
            ))  # fmt: skip
            pages.append(page)
            if page.next_cursor is None:
                return pages
            cursor = page.next_cursor


@pytest.fixture
def app() -> App:
    return App()


# --- listing -----------------------------------------------------------------------------------
@settings(deadline=None, max_examples=60)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=5), max_size=12),
    limit=st.integers(min_value=1, max_value=5),
)
async def test_paging_lists_every_chat_once_newest_first(offsets: list[int], limit: int) -> None:
    # Few distinct times, so that many chats share one and only the id orders them.
    app = App()
    ada = await app.user("ada")
    project = await app.project(ada)
    chats = [await app.chat(project, ada, at=T0 + timedelta(seconds=s)) for s in offsets]

    pages = await app.all_pages(ada, project, limit)

    listed = [chat.id for page in pages for chat in page.items]
    newest_first = sorted(chats, key=lambda c: (c.updated_at, c.id), reverse=True)
    assert listed == [c.id for c in newest_first]
    assert all(len(page.items) == limit for page in pages[:-1])
    assert len(pages) == max(1, -(-len(chats) // limit))


@given(
    when=st.datetimes(timezones=st.just(UTC)),
    chat_id=st.uuids(),
)
def test_a_cursor_round_trips_and_is_url_safe(when: datetime, chat_id: uuid.UUID) -> None:
    cursor = encode_cursor((when, chat_id))
    assert decode_cursor(cursor) == (when, chat_id)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "cursor", ["", "not a cursor", "AAAA", "é", "A" * 31 + "=", "%2F", "A" * 33, "A" * 32 + "B"]
)
async def test_a_cursor_it_did_not_issue_is_invalid_input(app: App, cursor: str) -> None:
    ada = await app.user("ada")
    project = await app.project(ada)
    with pytest.raises(InvalidInput, match="cursor is not valid"):
        await app.run(ListChats(user_id=ada.id, project_id=project.id, cursor=cursor))


@pytest.mark.parametrize("limit", [0, -1, 101])
async def test_a_page_holds_1_to_100_chats(app: App, limit: int) -> None:
    ada = await app.user("ada")
    with pytest.raises(InvalidInput, match="limit must be 1 to 100"):
        await app.run(ListChats(user_id=ada.id, limit=limit))


async def test_without_a_project_the_personal_project_is_listed(app: App) -> None:
    ada = await app.user("ada")
    assert await app.run(ListChats(user_id=ada.id)) == ChatPage(items=[], next_cursor=None)
    personal: Project = await app.run(EnsurePersonalProject(user_id=ada.id))
    other = await app.project(ada)
    mine = await app.chat(personal, ada)
    await app.chat(other, ada)

    page = await app.run(ListChats(user_id=ada.id))

    assert [c.id for c in page.items] == [mine.id]


async def test_a_non_member_cannot_list_a_projects_chats(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    project = await app.project(ada)
    await app.chat(project, ada)
    with pytest.raises(ProjectNotFound, match="not found"):
        await app.run(ListChats(user_id=bob.id, project_id=project.id))


# --- reading, renaming, deleting -----------------------------------------------------------------
async def test_a_member_reads_a_chat_with_its_messages_oldest_first(app: App) -> None:
    ada, vic = await app.user("ada"), await app.user("vic")
    project = await app.project(ada, (vic, VIEWER))
    chat = await app.chat(project, ada)
    later = await app.message(chat, "the answer", MessageRole.ASSISTANT, T0 + timedelta(1))
    first = await app.message(chat, "a question", MessageRole.USER, T0)

    found = await app.run(GetChat(user_id=vic.id, chat_id=chat.id))

    assert found.chat == chat
    assert found.messages == [first, later]


async def reply_with_session(
    app: App, chat: Chat, author: User, status: MessageStatus
) -> tuple[Message, ChatSession]:
    """An assistant reply in ``status`` and the live session that streams (or streamed) it."""
    reply = Message.pending_reply(
        id=app.ids.new_id(), chat_id=chat.id, model="dev/echo", provider="dev", now=app.clock.now()
    )
    if status is MessageStatus.STREAMING:
        reply.status = MessageStatus.STREAMING
    elif status.is_final:
        reply.finish(status=status, content="done", now=app.clock.now(), usage=TokenUsage())
    async with app.uow() as uow:
        await uow.chats.add_message(reply)
        await uow.commit()
    session = ChatSession.open(
        id=f"session-{reply.id}", user_id=author.id, chat_id=chat.id,
        project_id=chat.project_id, user_message_id=uuid.uuid4(), reply_message_id=reply.id,
        model="dev/echo", now=app.clock.now(), ttl=timedelta(minutes=10),
    )  # fmt: skip
    await app.sessions.save(session, app.clock.now())
    return reply, session


async def test_a_reply_still_being_generated_comes_with_its_live_session_id(app: App) -> None:
    ada, vic, bob = await app.user("ada"), await app.user("vic"), await app.user("bob")
    chat = await app.chat(await app.project(ada, (vic, VIEWER)), ada)
    await app.message(chat, "a question", MessageRole.USER, T0)
    pending, one = await reply_with_session(app, chat, ada, MessageStatus.PENDING)
    streaming, two = await reply_with_session(app, chat, ada, MessageStatus.STREAMING)
    for final in (MessageStatus.COMPLETE, MessageStatus.ABORTED, MessageStatus.FAILED):
        await reply_with_session(app, chat, ada, final)  # finished: never a session id

    found = await app.run(GetChat(user_id=vic.id, chat_id=chat.id))

    # reader passes bound to the caller, not the session ids themselves
    assert app.passes_shown(found) == {
        pending.id: (pending.id, vic.id),
        streaming.id: (streaming.id, vic.id),
    }
    assert len(found.live_sessions) == 2
    assert not any(s.id in p for s in (one, two) for p in found.live_sessions.values())
    with pytest.raises(ChatNotFound, match="not found"):  # a stranger learns nothing
        await app.run(GetChat(user_id=bob.id, chat_id=chat.id))


async def test_a_reply_whose_session_expired_or_was_deleted_has_no_session_id(app: App) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    _, session = await reply_with_session(app, chat, ada, MessageStatus.PENDING)
    await app.sessions.delete(session.id)
    assert (await app.run(GetChat(user_id=ada.id, chat_id=chat.id))).live_sessions == {}

    streaming, session = await reply_with_session(app, chat, ada, MessageStatus.STREAMING)
    found = await app.run(GetChat(user_id=ada.id, chat_id=chat.id))
    assert app.passes_shown(found) == {streaming.id: (streaming.id, ada.id)}
    app.clock.advance(timedelta(minutes=10))
    assert (await app.run(GetChat(user_id=ada.id, chat_id=chat.id))).live_sessions == {}


class CountingSessions(ChatSessionStore):
    """The app's sessions, with the lookups counted (and failing when ``down``)."""

    def __init__(self, inner: ChatSessionStore, *, down: bool = False) -> None:
        self._inner, self.down, self.lookups = inner, down, 0

    async def save(self, session: ChatSession, now: datetime) -> None:
        await self._inner.save(session, now)

    async def get(self, session_id: str) -> ChatSession:
        return await self._inner.get(session_id)

    async def delete(self, session_id: str) -> None:
        await self._inner.delete(session_id)

    async def live_session_ids(
        self, reply_message_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        self.lookups += 1
        if self.down:
            raise ServiceUnavailable("redis: connection failed")
        return await self._inner.live_session_ids(reply_message_ids)


async def test_the_session_store_is_asked_only_while_a_reply_is_being_generated(
    app: App,
) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    await app.message(chat, "a question", MessageRole.USER, T0)
    await reply_with_session(app, chat, ada, MessageStatus.COMPLETE)
    sessions = CountingSessions(app.sessions)
    read = GetChatHandler(app.uow(), sessions, app.passes, app.clock)

    assert (await read.execute(GetChat(user_id=ada.id, chat_id=chat.id))).live_sessions == {}
    assert sessions.lookups == 0

    reply, _ = await reply_with_session(app, chat, ada, MessageStatus.STREAMING)
    found = await GetChatHandler(app.uow(), sessions, app.passes, app.clock).execute(
        GetChat(user_id=ada.id, chat_id=chat.id)
    )
    assert app.passes_shown(found) == {reply.id: (reply.id, ada.id)}
    assert sessions.lookups == 1


async def test_a_session_store_that_cannot_answer_leaves_only_the_session_ids_out(
    app: App,
) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    reply, _ = await reply_with_session(app, chat, ada, MessageStatus.STREAMING)
    sessions = CountingSessions(app.sessions, down=True)

    found = await GetChatHandler(app.uow(), sessions, app.passes, app.clock).execute(
        GetChat(user_id=ada.id, chat_id=chat.id)
    )

    assert [m.id for m in found.messages] == [reply.id]
    assert found.live_sessions == {}
    assert sessions.lookups == 1


def chat_commands(user: User, chat_id: uuid.UUID) -> list[Any]:
    return [
        GetChat(user_id=user.id, chat_id=chat_id),
        UpdateChat(user_id=user.id, chat_id=chat_id, title="Mine now"),
        DeleteChat(user_id=user.id, chat_id=chat_id),
    ]


@pytest.mark.parametrize("index", range(3), ids=["get", "rename", "delete"])
async def test_another_users_chat_is_not_found_like_a_missing_one(app: App, index: int) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    project = await app.project(ada)
    chat = await app.chat(project, ada)

    with pytest.raises(ChatNotFound, match="not found") as on_real:
        await app.run(chat_commands(bob, chat.id)[index])
    with pytest.raises(ChatNotFound, match="not found") as on_missing:
        await app.run(chat_commands(bob, uuid.uuid4())[index])

    assert str(on_real.value) == str(on_missing.value)
    assert (await app.run(GetChat(user_id=ada.id, chat_id=chat.id))).chat == chat


async def test_a_stranger_with_a_bad_title_still_gets_not_found(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    chat = await app.chat(await app.project(ada), ada)
    with pytest.raises(ChatNotFound, match="not found"):
        await app.run(UpdateChat(user_id=bob.id, chat_id=chat.id, title="   "))


@pytest.mark.parametrize("command", [UpdateChat, DeleteChat])
async def test_a_viewer_can_read_but_neither_rename_nor_delete(app: App, command: type) -> None:
    ada, vic = await app.user("ada"), await app.user("vic")
    chat = await app.chat(await app.project(ada, (vic, VIEWER)), ada)
    extra = {"title": "Renamed"} if command is UpdateChat else {}

    with pytest.raises(PermissionDenied, match="write access needed"):
        await app.run(command(user_id=vic.id, chat_id=chat.id, **extra))

    assert (await app.run(GetChat(user_id=vic.id, chat_id=chat.id))).chat == chat


async def test_an_editor_renames_a_chat_which_moves_it_to_the_top(app: App) -> None:
    ada, eve = await app.user("ada"), await app.user("eve")
    project = await app.project(ada, (eve, EDITOR))
    older = await app.chat(project, ada, at=T0)
    newer = await app.chat(project, ada, at=T0 + timedelta(seconds=1))
    now = app.clock.advance(60)

    renamed = await app.run(UpdateChat(user_id=eve.id, chat_id=older.id, title="  Tax   notes "))

    assert (renamed.title, renamed.updated_at) == ("Tax notes", now)
    assert (await app.run(GetChat(user_id=ada.id, chat_id=older.id))).chat == renamed
    page = await app.run(ListChats(user_id=ada.id, project_id=project.id))
    assert [c.id for c in page.items] == [older.id, newer.id]


async def test_a_title_needs_1_to_120_characters(app: App) -> None:
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    for title in ["   ", "x" * 121]:
        with pytest.raises(InvalidInput, match="1 to 120 characters"):
            await app.run(UpdateChat(user_id=ada.id, chat_id=chat.id, title=title))
    assert (await app.run(GetChat(user_id=ada.id, chat_id=chat.id))).chat == chat


async def test_an_editor_sets_changes_and_removes_a_chats_system_prompt(app: App) -> None:
    ada, eve = await app.user("ada"), await app.user("eve")
    chat = await app.chat(await app.project(ada, (eve, EDITOR)), ada)
    assert chat.system_prompt is None
    now = app.clock.advance(60)

    set_ = await app.run(UpdateChat(user_id=eve.id, chat_id=chat.id, system_prompt="  Be brief.\n"))
    assert (set_.system_prompt, set_.title, set_.updated_at) == ("Be brief.", "A chat", now)
    renamed = await app.run(UpdateChat(user_id=eve.id, chat_id=chat.id, title="Kept prompt"))
    assert renamed.system_prompt == "Be brief."
    for removal in (None, "  \n "):
        await app.run(UpdateChat(user_id=eve.id, chat_id=chat.id, system_prompt="Again."))
        removed = await app.run(UpdateChat(user_id=eve.id, chat_id=chat.id, system_prompt=removal))
        assert removed.system_prompt is None
        assert (await app.run(GetChat(user_id=ada.id, chat_id=chat.id))).chat == removed


async def test_a_system_prompt_has_at_most_20000_characters_and_a_viewer_sets_none(
    app: App,
) -> None:
    ada, vic = await app.user("ada"), await app.user("vic")
    chat = await app.chat(await app.project(ada, (vic, VIEWER)), ada)

    with pytest.raises(InvalidInput, match="at most 20000 characters") as info:
        await app.run(UpdateChat(user_id=ada.id, chat_id=chat.id, system_prompt="x" * 20_001))
    assert info.value.details["field"] == "systemPrompt"
    with pytest.raises(PermissionDenied):
        await app.run(UpdateChat(user_id=vic.id, chat_id=chat.id, system_prompt="Obey me."))
    assert (await app.run(GetChat(user_id=ada.id, chat_id=chat.id))).chat == chat
    done = await app.run(UpdateChat(user_id=ada.id, chat_id=chat.id, system_prompt="x" * 20_000))
    assert done.system_prompt == "x" * 20_000


async def test_an_editor_deletes_a_chat_with_its_messages(app: App) -> None:
    ada, eve = await app.user("ada"), await app.user("eve")
    project = await app.project(ada, (eve, EDITOR))
    chat = await app.chat(project, ada)
    kept = await app.chat(project, ada)
    await app.message(chat, "hello", MessageRole.USER, T0)
    await app.message(kept, "hello", MessageRole.USER, T0)

    await app.run(DeleteChat(user_id=eve.id, chat_id=chat.id))

    with pytest.raises(ChatNotFound, match="not found"):
        await app.run(GetChat(user_id=ada.id, chat_id=chat.id))
    assert [m.chat_id for m in app.store.tables["messages"].values()] == [kept.id]
    page = await app.run(ListChats(user_id=ada.id, project_id=project.id))
    assert [c.id for c in page.items] == [kept.id]


# --- search --------------------------------------------------------------------------------------
async def test_search_finds_only_chats_the_caller_can_read(app: App) -> None:
    ada, bob = await app.user("ada"), await app.user("bob")
    shared = await app.project(bob, (ada, VIEWER))
    mine = await app.chat(await app.project(ada), ada, "Budget for spring")
    theirs = await app.chat(shared, bob, "Budget review")
    await app.chat(await app.project(bob), bob, "Secret budget")

    hits = await app.run(SearchChats(user_id=ada.id, q="budget"))

    assert {h.chat_id for h in hits} == {mine.id, theirs.id}


async def test_a_blank_search_finds_nothing(app: App) -> None:
    ada = await app.user("ada")
    await app.chat(await app.project(ada), ada, "anything")
    assert await app.run(SearchChats(user_id=ada.id, q="   ")) == []


@pytest.mark.parametrize(("q", "limit"), [("x", 0), ("x", 101), ("x" * 501, 20)])
async def test_a_search_is_bounded(app: App, q: str, limit: int) -> None:
    ada = await app.user("ada")
    with pytest.raises(InvalidInput, match="must be"):
        await app.run(SearchChats(user_id=ada.id, q=q, limit=limit))
