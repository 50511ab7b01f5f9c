"""ForkChat on the in-memory unit of work: where the fork goes and what it keeps."""

from __future__ import annotations

import uuid

import pytest

from tests.unit.services.test_chats import EDITOR, T0, App
from whalli.domain.model.chats import (
    GenerationParams,
    Message,
    MessageRole,
    MessageStatus,
    TokenUsage,
)
from whalli.domain.model.errors import ChatNotFound
from whalli.domain.model.users import User
from whalli.domain.services.chats.fork_chat import ForkChat, ForkChatHandler
from whalli.domain.services.chats.get_chat import ChatWithMessages
from whalli.domain.services.projects.ensure_personal_project import EnsurePersonalProject

FILE = uuid.uuid4()


class ForkApp(App):
    def __init__(self) -> None:
        super().__init__()
        self._handlers[ForkChat] = lambda: ForkChatHandler(self.uow(), self.clock, self.ids)

    async def person(self, name: str) -> User:
        user = await self.user(name)
        await self.run(EnsurePersonalProject(user_id=user.id, name="Personal"))
        return user


@pytest.fixture
def app() -> ForkApp:
    return ForkApp()


async def _team_chat_with_a_file(app: ForkApp, owner: User, editor: User) -> tuple[uuid.UUID, ...]:
    project = await app.project(owner, (editor, EDITOR))
    chat = await app.chat(project, owner, title="Team chat")
    question = Message(
        id=app.ids.new_id(), chat_id=chat.id, role=MessageRole.USER, content="see the file",
        attachment_ids=(FILE,), created_at=T0, updated_at=T0,
    )  # fmt: skip
    async with app.uow() as uow:
        await uow.chats.add_message(question)
        await uow.commit()
    return project.id, chat.id


async def test_attachment_links_stay_in_a_fork_within_the_project_only(app: ForkApp) -> None:
    alice, bob = await app.person("alice"), await app.person("bob")
    project_id, chat_id = await _team_chat_with_a_file(app, alice, bob)

    inside: ChatWithMessages = await app.run(
        ForkChat(user_id=bob.id, chat_id=chat_id, project_id=project_id)
    )
    outside: ChatWithMessages = await app.run(ForkChat(user_id=bob.id, chat_id=chat_id))

    assert (inside.chat.project_id, inside.messages[0].attachment_ids) == (project_id, (FILE,))
    assert outside.chat.project_id != project_id
    assert outside.messages[0].attachment_ids == ()
    assert {inside.chat.user_id, outside.chat.user_id} == {bob.id}  # the forker owns the fork


async def test_a_failed_fork_writes_nothing(app: ForkApp) -> None:
    alice, bob = await app.person("alice"), await app.person("bob")
    _, chat_id = await _team_chat_with_a_file(app, alice, bob)
    stranger = await app.person("carol")
    before = len(app.store.tables["chats"]), len(app.store.tables["messages"])

    with pytest.raises(ChatNotFound, match="Chat not found"):
        await app.run(ForkChat(user_id=stranger.id, chat_id=chat_id))

    assert (len(app.store.tables["chats"]), len(app.store.tables["messages"])) == before


async def test_a_fork_keeps_a_replys_reasoning_and_parameters(app: ForkApp) -> None:
    alice = await app.person("alice")
    project = await app.project(alice)
    chat = await app.chat(project, alice, title="Thinking")
    question = Message.from_user(id=app.ids.new_id(), chat_id=chat.id, content="why?", now=T0)
    reply = Message.pending_reply(
        id=app.ids.new_id(), chat_id=chat.id, model="openai/o4-mini", provider="openai", now=T0,
        params=GenerationParams(max_tokens=99),
    )  # fmt: skip
    reply.finish(
        status=MessageStatus.COMPLETE, content="Because.", usage=TokenUsage(), now=T0,
        reasoning="Let me think.",
    )  # fmt: skip
    async with app.uow() as uow:
        await uow.chats.add_messages([question, reply])
        await uow.commit()

    fork: ChatWithMessages = await app.run(ForkChat(user_id=alice.id, chat_id=chat.id))

    assert [(m.content, m.reasoning) for m in fork.messages] == [
        ("why?", ""), ("Because.", "Let me think."),
    ]  # fmt: skip
    assert fork.messages[1].params == GenerationParams(max_tokens=99)  # regenerated as asked
