"""RegenerateReply: a chat's last reply replaced by a new one to the same message."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from tests.integration.entities import World, a_membership, a_user, committed_world
from tests.unit.services.test_start_chat import FailingCommit, Sessions, SlowLock
from tests.unit.services.test_start_chat_attachments import CATALOG
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.chats import (
    Message,
    MessageRole,
    MessageStatus,
    PromptMessage,
    TokenUsage,
)
from whalli.domain.model.errors import (
    ChatNotFound,
    InvalidInput,
    ModelNotFound,
    NothingToRegenerate,
    PermissionDenied,
    ReplyInProgress,
)
from whalli.domain.model.projects import MemberRole
from whalli.domain.services.chat.context import PreparedReply
from whalli.domain.services.chat.regenerate_reply import (
    RegeneratedReply,
    RegenerateReply,
    RegenerateReplyHandler,
)
from whalli.domain.services.chat.start_chat import StartChat, StartChatHandler


class Chat:
    """A chat with one exchange: ``question`` and its ``reply``, finished unless told."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.ids = SequentialIds()
        self.sessions = Sessions(self.clock)
        self.launched: list[tuple[ChatSession, PreparedReply, asyncio.Future[None]]] = []

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    async def setup(self, *, finished: bool = True) -> None:
        self.world: World = await committed_world(self.uow())
        start = StartChatHandler(
            self.uow(), self.sessions, CATALOG, frozenset({"dev"}), clock=self.clock, ids=self.ids
        )
        started = await start.execute(
            StartChat(
                user_id=self.world.user.id,
                model="dev/echo",
                message="what is 2 + 2?",
                chat_id=self.world.chat.id,
            )
        )
        self.first = started.prepared
        self.question_id, self.reply = started.message_id, started.prepared.reply
        if finished:
            await self.finish(self.reply, MessageStatus.ABORTED)

    async def finish(self, reply: Message, status: MessageStatus) -> None:
        reply = msgspec.structs.replace(reply)
        reply.finish(status=status, content="4", now=self.clock.now(), usage=TokenUsage())
        async with self.uow() as uow:
            await uow.chats.update_message(reply)
            await uow.commit()

    def launch(
        self, session: ChatSession, prepared: PreparedReply, saved: asyncio.Future[None]
    ) -> None:
        self.launched.append((session, prepared, saved))

    async def regenerate(self, uow: InMemoryUnitOfWork | None = None, **fields: object) -> object:
        handler = RegenerateReplyHandler(
            uow or self.uow(), self.sessions, CATALOG, frozenset({"dev"}), clock=self.clock,
            ids=self.ids,
        )  # fmt: skip
        command = RegenerateReply(user_id=self.world.user.id, chat_id=self.world.chat.id)
        return await handler.execute(msgspec.structs.replace(command, **fields), self.launch)

    async def messages(self) -> list[Message]:
        async with self.uow() as uow:
            return await uow.chats.list_messages(self.world.chat.id)


@pytest.fixture
async def chat() -> Chat:
    made = Chat()
    await made.setup()
    return made


async def test_the_last_reply_is_replaced_by_a_new_one_to_the_same_message(chat: Chat) -> None:
    done = await chat.regenerate()

    question, reply = await chat.messages()
    assert (question.id, question.role) == (chat.question_id, MessageRole.USER)
    assert reply.id not in (chat.reply.id, question.id)
    assert (reply.role, reply.status, reply.model) == (
        MessageRole.ASSISTANT, MessageStatus.PENDING, "dev/echo",
    )  # fmt: skip
    assert done.message_id == question.id
    assert done.replaced_message_id == chat.reply.id
    [(session, prepared, saved)] = chat.launched
    assert prepared.prompt == chat.first.prompt  # what the start sent, asked again
    assert prepared.reply == reply
    assert session.reply_message_id == reply.id
    assert (session.user_message_id, session.use_cache) == (question.id, False)
    assert saved.done()
    assert not saved.cancelled()
    assert await chat.sessions.get(session.id) == session


async def test_a_regeneration_sends_the_chats_system_prompt_as_it_is_now(chat: Chat) -> None:
    """A system prompt changed after the reply (``UpdateChat``) applies to the new one."""
    async with chat.uow() as uow:
        stored = await uow.chats.get(chat.world.chat.id)
        stored.instruct("Answer with a number only.", chat.clock.now())
        await uow.chats.update(stored)
        await uow.commit()

    await chat.regenerate()

    [(_, prepared, _)] = chat.launched
    assert prepared.prompt[0] == PromptMessage(
        role=MessageRole.SYSTEM, content="Answer with a number only."
    )
    assert prepared.prompt[1:] == chat.first.prompt


@pytest.mark.parametrize("status", [MessageStatus.PENDING, MessageStatus.STREAMING])
async def test_a_reply_still_being_generated_is_not_replaced(status: MessageStatus) -> None:
    chat = Chat()
    await chat.setup(finished=False)
    if status is MessageStatus.STREAMING:
        async with chat.uow() as uow:
            assert await uow.chats.save_progress(chat.reply.id, "4", chat.clock.now())
            await uow.commit()
    before = await chat.messages()

    with pytest.raises(ReplyInProgress):
        await chat.regenerate()

    assert await chat.messages() == before
    assert chat.launched == []


async def test_two_regenerations_one_after_the_other_the_second_waits_its_turn(
    chat: Chat,
) -> None:
    await chat.regenerate()

    with pytest.raises(ReplyInProgress):  # the first one's reply is being generated
        await chat.regenerate()
    assert len(await chat.messages()) == 2


async def test_a_question_without_a_reply_is_answered_by_the_model_named(chat: Chat) -> None:
    """A chat ending with an unanswered question (a fork at it, an import): nothing is
    replaced; the model must be named, there is no reply to take it from."""
    async with chat.uow() as uow:
        await uow.chats.delete_message(chat.reply.id)
        await uow.commit()

    with pytest.raises(InvalidInput, match="no reply to take the model from") as caught:
        await chat.regenerate()
    assert caught.value.details["field"] == "model"
    regenerated = await chat.regenerate(model="dev/echo")

    assert isinstance(regenerated, RegeneratedReply)
    assert regenerated.replaced_message_id is None
    assert regenerated.message_id == chat.question_id
    question, reply = await chat.messages()
    assert (question.id, reply.id, reply.model) == (
        chat.question_id, regenerated.prepared.reply.id, "dev/echo"
    )  # fmt: skip


async def test_an_empty_chat_has_nothing_to_regenerate(chat: Chat) -> None:
    async with chat.uow() as uow:
        await uow.chats.delete_message(chat.reply.id)
        await uow.chats.delete_message(chat.question_id)
        await uow.commit()

    with pytest.raises(NothingToRegenerate):
        await chat.regenerate(model="dev/echo")
    assert chat.launched == []


async def test_only_a_writer_of_the_chats_project_may_regenerate(chat: Chat) -> None:
    viewer, stranger = a_user(), a_user()
    async with chat.uow() as uow:
        for user in (viewer, stranger):
            await uow.users.add(user)
        await uow.projects.add_member(a_membership(chat.world.project, viewer, MemberRole.VIEWER))
        await uow.commit()
    before = await chat.messages()

    with pytest.raises(PermissionDenied):
        await chat.regenerate(user_id=viewer.id)
    with pytest.raises(ChatNotFound):
        await chat.regenerate(user_id=stranger.id)
    assert await chat.messages() == before


async def test_an_unknown_model_changes_nothing(chat: Chat) -> None:
    before = await chat.messages()

    with pytest.raises(ModelNotFound):
        await chat.regenerate(model="nobody/nothing")

    assert await chat.messages() == before


async def test_a_reply_whose_model_is_gone_asks_for_a_model_and_changes_nothing(
    chat: Chat,
) -> None:
    """A retired model, or an imported reply's label (``chatgpt/gpt-4o``): a 422 on ``model``
    saying which, instead of a 404 for a model the caller never named."""
    retired = msgspec.structs.replace((await chat.messages())[-1], model="chatgpt/gpt-4o")
    async with chat.uow() as uow:
        await uow.chats.update_message(retired)
        await uow.commit()
    before = await chat.messages()

    with pytest.raises(InvalidInput, match="chatgpt/gpt-4o") as info:
        await chat.regenerate()

    assert info.value.details["field"] == "model"
    assert await chat.messages() == before
    await chat.regenerate(model="dev/echo")  # naming one answers
    assert len(chat.launched) == 1


async def test_a_regeneration_whose_write_fails_keeps_the_old_reply_and_no_session(
    chat: Chat,
) -> None:
    before = await chat.messages()

    with pytest.raises(Exception, match="unavailable"):
        await chat.regenerate(FailingCommit(chat.store))

    assert await chat.messages() == before
    [(session, _, saved)] = chat.launched
    assert saved.cancelled()  # the generation launched is cancelled
    assert chat.sessions.stored() == [s for s in chat.sessions.stored() if s != session.id]
    assert session.id not in chat.sessions.stored()


async def test_the_message_edited_first_is_saved_and_answered(chat: Chat) -> None:
    await chat.regenerate(message="what is 3 + 3?")

    question, reply = await chat.messages()
    assert (question.id, question.content) == (chat.question_id, "what is 3 + 3?")
    assert question.updated_at == chat.clock.now()
    [(_, prepared, _)] = chat.launched
    assert prepared.prompt[-1].content == "what is 3 + 3?"
    assert prepared.prompt[:-1] == chat.first.prompt[:-1]
    assert reply.status is MessageStatus.PENDING


async def test_an_edit_to_nothing_is_refused_and_changes_nothing(chat: Chat) -> None:
    before = await chat.messages()

    with pytest.raises(InvalidInput, match="cannot be empty"):
        await chat.regenerate(message="  \n ")

    assert await chat.messages() == before
    assert chat.launched == []


async def test_a_regeneration_is_stamped_once_the_chat_is_locked(chat: Chat) -> None:
    """A regeneration that waited for the chat's lock (another one, or a new message) is
    written after it, so its reply must not be stamped before it."""
    read_at = chat.clock.now()

    regenerated = await chat.regenerate(SlowLock(chat.store, chat.clock, wait=5))

    assert isinstance(regenerated, RegeneratedReply)
    locked_at = chat.clock.now()
    assert locked_at > read_at
    reply = chat.store.tables["messages"][regenerated.prepared.reply.id]
    assert reply.created_at == locked_at
    assert regenerated.session.created_at == locked_at
    assert chat.store.tables["chats"][chat.world.chat.id].updated_at == locked_at
