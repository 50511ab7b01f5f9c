"""Custom instructions: set with UpdateProfile, copied into each new chat by StartChat."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from tests.integration.entities import NOW, World, a_membership, committed_world
from tests.unit.services.test_start_chat_attachments import CATALOG
from whalli.adapters.memory.chat_sessions import InMemoryChatSessionStore
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.chats import MessageRole, PromptMessage
from whalli.domain.model.errors import InvalidInput, UserNotFound
from whalli.domain.model.projects import MemberRole, Project
from whalli.domain.model.users import User, clean_custom_instructions
from whalli.domain.services.auth.get_profile import GetProfile, GetProfileHandler, Profile
from whalli.domain.services.auth.update_profile import UpdateProfile, UpdateProfileHandler
from whalli.domain.services.chat.start_chat import StartChat, StartChatHandler, StartedChat
from whalli.domain.services.chats.update_chat import UpdateChat, UpdateChatHandler
from whalli.domain.services.projects.ensure_personal_project import personal_project_id


class Recording:
    """A repository that records the name of every method called on it."""

    def __init__(self, name: str, inner: object, calls: list[str]) -> None:
        self._name, self._inner, self._calls = name, inner, calls

    def __getattr__(self, method: str) -> Any:
        target = getattr(self._inner, method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(f"{self._name}.{method}")
            return await target(*args, **kwargs)

        return call


class RecordingUnitOfWork(InMemoryUnitOfWork):
    """Records every repository call: each one is a database round trip in Postgres."""

    REPOSITORIES = ("users", "projects", "chats", "attachments", "usage", "shares")

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.calls: list[str] = []
        for name in self.REPOSITORIES:
            setattr(self, name, Recording(name, getattr(self, name), self.calls))


class Accounts:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.ids = SequentialIds()

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    async def world(self) -> World:
        """A user with a shared project (``world.project``, holding a chat) and their personal
        project, where new chats start by default here."""
        world = await committed_world(self.uow())
        personal = Project.create(
            id=personal_project_id(world.user.id), name="Personal", owner_id=world.user.id,
            now=NOW,
        )  # fmt: skip
        async with self.uow() as uow:
            await uow.projects.add(personal)
            await uow.projects.add_member(a_membership(personal, world.user, MemberRole.OWNER))
            await uow.commit()
        return world

    async def user(self, user_id: uuid.UUID) -> User:
        async with self.uow().read_only() as uow:
            return await uow.users.get(user_id)

    async def update(self, user_id: uuid.UUID, **changes: str | None) -> Profile:
        handler = UpdateProfileHandler(self.uow(), self.clock)
        return await handler.execute(UpdateProfile(user_id=user_id, **changes))

    async def profile(self, user: User) -> Profile:
        return await GetProfileHandler(self.uow()).execute(GetProfile(user_id=user.id, user=user))

    async def start(
        self, world: World, uow: InMemoryUnitOfWork | None = None, **changes: Any
    ) -> StartedChat:
        handler = StartChatHandler(
            uow or self.uow(), InMemoryChatSessionStore(self.clock), CATALOG, frozenset({"dev"}),
            clock=self.clock, ids=self.ids,
        )  # fmt: skip
        # the caller as authentication read it, as the HTTP entrypoint passes it
        user = await self.user(world.user.id)
        command = StartChat(
            user_id=user.id,
            user=user,
            model="dev/echo",
            message="hello",
        )  # fmt: skip (no project: the caller's personal one)
        return await handler.execute(msgspec.structs.replace(command, **changes))

    def system_prompt(self, started: StartedChat) -> str | None:
        return self.store.tables["chats"][started.chat_id].system_prompt


@pytest.fixture
def accounts() -> Accounts:
    return Accounts()


# --- the rules ---------------------------------------------------------------------------------
def test_custom_instructions_are_cleaned_as_a_system_prompt_is() -> None:
    assert clean_custom_instructions("  Answer in French.\n") == "Answer in French."
    assert clean_custom_instructions(" \n\t ") is None
    assert clean_custom_instructions(None) is None
    assert clean_custom_instructions("x" * 20_000) == "x" * 20_000
    with pytest.raises(InvalidInput, match="at most 20000 characters") as info:
        clean_custom_instructions("x" * 20_001)
    assert info.value.details == {"field": "customInstructions", "limit": 20_000}


# --- UpdateProfile / GetProfile ------------------------------------------------------------------
async def test_custom_instructions_are_set_read_back_and_cleared(accounts: Accounts) -> None:
    world = await accounts.world()
    later = accounts.clock.advance(5)

    profile = await accounts.update(world.user.id, custom_instructions="  Be brief.  ")
    assert profile.custom_instructions == "Be brief."
    stored = await accounts.user(world.user.id)
    assert (stored.has_custom_instructions, stored.updated_at) == (True, later)
    assert (await accounts.profile(stored)).custom_instructions == "Be brief."

    cleared = await accounts.update(world.user.id, custom_instructions="   ")
    assert cleared.custom_instructions is None
    stored = await accounts.user(world.user.id)
    assert stored.has_custom_instructions is False
    assert (await accounts.profile(stored)).custom_instructions is None


async def test_a_rename_leaves_the_custom_instructions_and_none_leaves_both(
    accounts: Accounts,
) -> None:
    world = await accounts.world()
    await accounts.update(world.user.id, custom_instructions="Be brief.")

    renamed = await accounts.update(world.user.id, name="Grace")
    assert (renamed.user.name, renamed.custom_instructions) == ("Grace", "Be brief.")
    both = await accounts.update(world.user.id, name="Ada", custom_instructions="Be kind.")
    assert (both.user.name, both.custom_instructions) == ("Ada", "Be kind.")
    stored = await accounts.user(world.user.id)
    assert (stored.name, stored.has_custom_instructions) == ("Ada", True)
    written = stored.updated_at
    accounts.clock.advance(5)
    unchanged = await accounts.update(world.user.id, custom_instructions=" Be kind. ")
    assert unchanged.custom_instructions == "Be kind."
    assert (await accounts.user(world.user.id)).updated_at == written  # nothing was written


async def test_too_long_custom_instructions_change_nothing(accounts: Accounts) -> None:
    world = await accounts.world()
    await accounts.update(world.user.id, custom_instructions="Be brief.")

    with pytest.raises(InvalidInput, match="at most 20000 characters"):
        await accounts.update(world.user.id, name="Grace", custom_instructions="x" * 20_001)

    stored = await accounts.user(world.user.id)
    assert (stored.name, (await accounts.profile(stored)).custom_instructions) == (
        "Ada", "Be brief."
    )  # fmt: skip


async def test_an_unknown_account_is_not_found(accounts: Accounts) -> None:
    with pytest.raises(UserNotFound, match="User not found"):
        await accounts.update(uuid.uuid4(), custom_instructions="Be brief.")


# --- StartChat ---------------------------------------------------------------------------------
async def test_a_new_chat_gets_the_custom_instructions_as_its_system_prompt(
    accounts: Accounts,
) -> None:
    world = await accounts.world()
    await accounts.update(world.user.id, custom_instructions="Answer in French.")

    started = await accounts.start(world)

    assert accounts.system_prompt(started) == "Answer in French."
    assert [(m.role, m.content) for m in started.prepared.prompt] == [
        (MessageRole.SYSTEM, "Answer in French."), (MessageRole.USER, "hello"),
    ]  # fmt: skip


async def test_a_given_system_prompt_wins_and_a_blank_one_opts_the_chat_out(
    accounts: Accounts,
) -> None:
    world = await accounts.world()
    await accounts.update(world.user.id, custom_instructions="Answer in French.")

    own = await accounts.start(world, system_prompt="Answer in German.")
    blank = await accounts.start(world, system_prompt="")

    assert accounts.system_prompt(own) == "Answer in German."
    assert own.prepared.prompt[0].content == "Answer in German."
    assert accounts.system_prompt(blank) is None
    assert [m.role for m in blank.prepared.prompt] == [MessageRole.USER]


async def test_a_later_change_of_the_instructions_changes_no_existing_chat(
    accounts: Accounts,
) -> None:
    world = await accounts.world()
    await accounts.update(world.user.id, custom_instructions="Answer in French.")
    earlier = await accounts.start(world)

    await accounts.update(world.user.id, custom_instructions="Answer in Latin.")
    again = await accounts.start(world, chat_id=earlier.chat_id, project_id=None)
    before_any = await accounts.start(world, chat_id=world.chat.id, project_id=None)
    later = await accounts.start(world)

    assert accounts.system_prompt(earlier) == "Answer in French."
    assert again.prepared.prompt[0] == PromptMessage(
        role=MessageRole.SYSTEM, content="Answer in French."
    )
    # a chat started before there were any instructions stays without
    assert accounts.system_prompt(before_any) is None
    assert before_any.prepared.prompt[0].role != MessageRole.SYSTEM
    assert accounts.system_prompt(later) == "Answer in Latin."


async def test_the_chats_own_change_still_applies_after_the_copy(accounts: Accounts) -> None:
    world = await accounts.world()
    await accounts.update(world.user.id, custom_instructions="Answer in French.")
    started = await accounts.start(world)

    change = UpdateChat(
        chat_id=started.chat_id, user_id=world.user.id, system_prompt="Answer in Italian."
    )
    await UpdateChatHandler(accounts.uow(), accounts.clock).execute(change)

    assert accounts.system_prompt(started) == "Answer in Italian."
    profile = await accounts.profile(await accounts.user(world.user.id))
    assert profile.custom_instructions == "Answer in French."


async def test_a_start_without_instructions_reads_nothing_more(accounts: Accounts) -> None:
    plain, instructed = await accounts.world(), await accounts.world()
    await accounts.update(instructed.user.id, custom_instructions="Answer in French.")
    without, with_them = RecordingUnitOfWork(accounts.store), RecordingUnitOfWork(accounts.store)

    await accounts.start(plain, without)
    await accounts.start(instructed, with_them)

    assert not any(call.startswith("users.") for call in without.calls)
    # the one read of the text, before the chat and its messages are written (the prompt needs it),
    # after the members of the personal project (one its owner shared never gets them)
    assert with_them.calls == [
        *without.calls[:-1], "projects.list_members", "users.get_custom_instructions",
        without.calls[-1],
    ]  # fmt: skip
    assert without.calls[-1] == "chats.add_with_messages"


async def test_a_start_with_its_own_system_prompt_does_not_read_the_instructions(
    accounts: Accounts,
) -> None:
    world = await accounts.world()
    await accounts.update(world.user.id, custom_instructions="Answer in French.")
    recording = RecordingUnitOfWork(accounts.store)

    await accounts.start(world, recording, system_prompt="Answer in German.")

    assert "users.get_custom_instructions" not in recording.calls


async def test_a_chat_in_a_shared_project_never_gets_the_instructions(accounts: Accounts) -> None:
    """They are private: a shared project's chat shows its system prompt to every member."""
    world = await accounts.world()
    await accounts.update(world.user.id, custom_instructions="Answer in French.")
    recording = RecordingUnitOfWork(accounts.store)

    started = await accounts.start(world, recording, project_id=world.project.id)

    assert accounts.system_prompt(started) is None
    assert "users.get_custom_instructions" not in recording.calls
    assert [m.role for m in started.prepared.prompt] == [MessageRole.USER]


async def test_reading_a_profile_without_instructions_makes_no_query(accounts: Accounts) -> None:
    world = await accounts.world()
    recording = RecordingUnitOfWork(accounts.store)
    user = await accounts.user(world.user.id)

    profile = await GetProfileHandler(recording).execute(GetProfile(user_id=user.id, user=user))

    assert (profile.user, profile.custom_instructions, recording.calls) == (user, None, [])
