"""Deleting a chat or its project asks the replies still being generated in it to stop; disabling
an account asks those its sessions generate."""

from __future__ import annotations

import logging

import msgspec
import pytest

from tests.unit.services.test_chats import EDITOR, App, CountingSessions, reply_with_session
from whalli.adapters.memory.blob_storage import InMemoryBlobStorage
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.domain.model.chats import MessageStatus
from whalli.domain.model.errors import ProjectNotFound
from whalli.domain.model.users import Role
from whalli.domain.services.admin.update_user import UpdateUser, UpdateUserHandler
from whalli.domain.services.chat.stop_replies import ReplyStopper
from whalli.domain.services.chats.delete_chat import DeleteChat, DeleteChatHandler
from whalli.domain.services.projects.delete_project import DeleteProject, DeleteProjectHandler


class Deleting:
    def __init__(self, app: App, *, store_down: bool = False) -> None:
        self.app = app
        self.stream = InMemoryReplyStream(app.clock)
        self.sessions = CountingSessions(app.sessions, down=store_down)
        self.stopper = ReplyStopper(self.sessions, self.stream)

    async def chat(self, command: DeleteChat) -> None:
        await DeleteChatHandler(self.app.uow(), self.stopper).execute(command)

    async def project(self, command: DeleteProject) -> None:
        handler = DeleteProjectHandler(self.app.uow(), InMemoryBlobStorage(), self.stopper)
        await handler.execute(command)

    async def stopped(self, *session_ids: str) -> set[str]:
        return await self.stream.stops_requested(session_ids)


async def test_deleting_a_chat_stops_its_replies_being_generated_and_only_those() -> None:
    app = App()
    ada, eve = await app.user("ada"), await app.user("eve")
    project = await app.project(ada, (eve, EDITOR))
    chat, other = await app.chat(project, ada), await app.chat(project, ada)
    _, pending = await reply_with_session(app, chat, ada, MessageStatus.PENDING)
    _, streaming = await reply_with_session(app, chat, ada, MessageStatus.STREAMING)
    _, done = await reply_with_session(app, chat, ada, MessageStatus.COMPLETE)
    _, elsewhere = await reply_with_session(app, other, ada, MessageStatus.STREAMING)
    deleting = Deleting(app)

    await deleting.chat(DeleteChat(user_id=eve.id, chat_id=chat.id))  # an editor may

    ids = (pending.id, streaming.id, done.id, elsewhere.id)
    assert await deleting.stopped(*ids) == {pending.id, streaming.id}


async def test_deleting_a_project_stops_the_replies_being_generated_in_its_chats() -> None:
    app = App()
    ada = await app.user("ada")
    project, kept = await app.project(ada), await app.project(ada)
    one, two = await app.chat(project, ada), await app.chat(project, ada)
    _, first = await reply_with_session(app, one, ada, MessageStatus.STREAMING)
    _, second = await reply_with_session(app, two, ada, MessageStatus.PENDING)
    _, other = await reply_with_session(app, await app.chat(kept, ada), ada, MessageStatus.PENDING)
    deleting = Deleting(app)

    await deleting.project(DeleteProject(user_id=ada.id, project_id=project.id))

    assert await deleting.stopped(first.id, second.id, other.id) == {first.id, second.id}


async def test_nothing_being_generated_asks_the_store_nothing() -> None:
    app = App()
    ada = await app.user("ada")
    chat = await app.chat(await app.project(ada), ada)
    await reply_with_session(app, chat, ada, MessageStatus.COMPLETE)
    deleting = Deleting(app)

    await deleting.chat(DeleteChat(user_id=ada.id, chat_id=chat.id))

    assert deleting.sessions.lookups == 0


async def test_a_store_that_does_not_answer_fails_no_deletion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()
    ada = await app.user("ada")
    project = await app.project(ada)
    chat = await app.chat(project, ada)
    await reply_with_session(app, chat, ada, MessageStatus.STREAMING)
    deleting = Deleting(app, store_down=True)

    with caplog.at_level(logging.WARNING):
        await deleting.chat(DeleteChat(user_id=ada.id, chat_id=chat.id))
        await deleting.project(DeleteProject(user_id=ada.id, project_id=project.id))

    async with app.uow() as uow:
        with pytest.raises(ProjectNotFound, match="not found"):
            await uow.projects.get(project.id)
    assert deleting.sessions.lookups == 1  # the project had nothing left being generated
    assert "were not all asked to stop" in caplog.text


async def test_disabling_an_account_stops_the_replies_its_sessions_generate_and_only_those() -> (
    None
):
    app = App()
    ada, eve = await app.user("ada"), await app.user("eve")
    admin = msgspec.structs.replace(await app.user("root"), role=Role.ADMIN)
    async with app.uow() as uow:
        await uow.users.update(admin)
        await uow.commit()
    team = await app.project(ada, (eve, EDITOR))
    adas_chat, eves_chat = await app.chat(team, ada), await app.chat(team, eve)
    _, in_adas = await reply_with_session(app, adas_chat, eve, MessageStatus.STREAMING)
    _, in_eves = await reply_with_session(app, eves_chat, eve, MessageStatus.PENDING)
    _, theirs = await reply_with_session(app, adas_chat, ada, MessageStatus.STREAMING)
    _, finished = await reply_with_session(app, eves_chat, eve, MessageStatus.COMPLETE)
    deleting = Deleting(app)
    handler = UpdateUserHandler(app.uow(), app.clock, stopper=deleting.stopper)

    await handler.execute(UpdateUser(admin_id=admin.id, user_id=eve.id, disabled=True))

    ids = (in_adas.id, in_eves.id, theirs.id, finished.id)
    assert await deleting.stopped(*ids) == {in_adas.id, in_eves.id}
