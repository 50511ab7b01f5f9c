"""Reader passes: what a chat read shows instead of a session id, and who they admit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.services.test_chats import T0, VIEWER, App, reply_with_session
from whalli.adapters.crypto.stream_passes import HmacStreamPasses
from whalli.adapters.memory.reply_stream import InMemoryReplyStream
from whalli.domain.model.chat_sessions import (
    STREAM_PASS_TTL,
    THIS_PROCESS,
    ChatSession,
    StreamPass,
)
from whalli.domain.model.chats import MessageStatus
from whalli.domain.model.errors import ChatSessionNotFound, PermissionDenied
from whalli.domain.model.principal import CredentialId
from whalli.domain.model.projects import MemberRole
from whalli.domain.services.chat.attach_stream import (
    START_READ_GRACE,
    AttachStream,
    AttachStreamHandler,
)
from whalli.domain.services.chat.stop_generation import StopGeneration, StopGenerationHandler
from whalli.domain.services.chats.get_chat import GetChat
from whalli.domain.services.projects.add_member import AddMember
from whalli.domain.services.projects.ensure_personal_project import EnsurePersonalProject
from whalli.domain.services.projects.remove_member import RemoveMember, RemoveMemberHandler

SECRET = "a test secret for reader passes, 32+ bytes"
passes = HmacStreamPasses(SECRET)
instants = st.integers(0, 4_000_000_000).map(lambda s: datetime.fromtimestamp(s, UTC))


@given(st.uuids(), st.uuids(), instants)
def test_a_pass_names_its_reply_and_reader_until_it_expires(
    reply_id: uuid.UUID, reader: uuid.UUID, expires_at: datetime
) -> None:
    granted = StreamPass(reply_message_id=reply_id, user_id=reader, expires_at=expires_at)
    value = passes.issue(granted)

    assert passes.open(value, expires_at - timedelta(seconds=1)) == granted
    with pytest.raises(ChatSessionNotFound):
        passes.open(value, expires_at)


@given(st.uuids(), st.uuids(), st.data())
def test_a_pass_changed_anywhere_admits_nobody(
    reply_id: uuid.UUID, reader: uuid.UUID, data: st.DataObject
) -> None:
    granted = StreamPass(reply_message_id=reply_id, user_id=reader, expires_at=T0)
    value = passes.issue(granted)
    at = data.draw(st.integers(0, len(value) - 1))
    replacement = data.draw(st.characters().filter(lambda c: c != value[at]))
    forged = value[:at] + replacement + value[at + 1 :]

    with pytest.raises(ChatSessionNotFound) as refused:  # (four dots: one change keeps three)
        passes.open(forged, T0 - timedelta(minutes=1))
    assert forged not in str(refused.value)


credentials = st.one_of(
    st.just(CredentialId()),
    st.uuids().map(lambda u: CredentialId(login_session_id=u)),
    st.uuids().map(lambda u: CredentialId(api_key_id=u)),
)


@given(st.uuids(), st.uuids(), credentials)
def test_a_pass_names_the_credential_its_reader_read_the_chat_with(
    reply_id: uuid.UUID, reader: uuid.UUID, credential: CredentialId
) -> None:
    granted = StreamPass(
        reply_message_id=reply_id, user_id=reader, expires_at=T0, credential=credential
    )

    assert passes.open(passes.issue(granted), T0 - timedelta(seconds=1)) == granted


def test_a_pass_of_the_format_before_credentials_admits_nobody() -> None:
    body = f"{uuid.uuid4().hex}.{uuid.uuid4().hex}.{int(T0.timestamp())}"
    key = hmac.new(SECRET.encode(), b"whalli stream pass v1", hashlib.sha256).digest()
    mac = hmac.new(key, body.encode(), hashlib.sha256).digest()[:16]
    v1 = f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    with pytest.raises(ChatSessionNotFound, match="not found"):
        passes.open(v1, T0 - timedelta(minutes=1))


def test_a_value_without_a_dot_is_a_session_id_and_junk_is_not_found() -> None:
    assert passes.open("s" * 43, T0) is None
    for junk in (".", "a.b", "x" * 300 + ".y", "s.é.1.ü", "s.u.9.AAAAAAAAAAAAAAAAAAAAAA"):
        with pytest.raises(ChatSessionNotFound):
            passes.open(junk, T0)


def test_a_pass_signed_with_another_secret_admits_nobody() -> None:
    other = HmacStreamPasses("another secret entirely, also 32+ bytes long")
    granted = StreamPass(reply_message_id=uuid.uuid4(), user_id=uuid.uuid4(), expires_at=T0)
    value = other.issue(granted)

    with pytest.raises(ChatSessionNotFound):
        passes.open(value, T0 - timedelta(minutes=1))


class World:
    """A chat whose reply is being generated, started by ada; vic may read it, bob may not."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.stream = InMemoryReplyStream(app.clock)

    async def setup(self) -> None:
        app = self.app
        self.ada, self.vic, self.bob = (
            await app.user("ada"),
            await app.user("vic"),
            await app.user("bob"),
        )
        self.project = await app.project(self.ada, (self.vic, VIEWER))
        chat = await app.chat(self.project, self.ada)
        self.reply, self.session = await reply_with_session(
            app, chat, self.ada, MessageStatus.STREAMING
        )
        self.chat = chat

    async def pass_for(self, reader: uuid.UUID) -> str:
        found = await self.app.run(GetChat(user_id=reader, chat_id=self.chat.id))
        value: str = found.live_sessions[self.reply.id]
        return value

    async def attach(self, value: str, caller: uuid.UUID | None = None) -> ChatSession:
        handler = AttachStreamHandler(self.app.sessions, self.app.uow(), passes, self.app.clock)
        return await handler.execute(AttachStream(session_id=value, user_id=caller))

    async def stop(self, value: str, caller: uuid.UUID) -> None:
        handler = StopGenerationHandler(
            self.app.sessions, self.stream, self.app.uow(), passes, self.app.clock
        )
        await handler.execute(StopGeneration(session_id=value, user_id=caller))


@pytest.fixture
async def world() -> World:
    app = App()
    app.passes = passes
    made = World(app)
    await made.setup()
    return made


async def test_a_readers_pass_admits_them_while_they_may_read_the_chat(world: World) -> None:
    vic_pass = await world.pass_for(world.vic.id)
    assert world.session.id not in vic_pass  # it holds no credential of its own

    assert await world.attach(vic_pass) == world.session  # no header: the EventSource way
    assert await world.attach(vic_pass, world.vic.id) == world.session

    remove = RemoveMemberHandler(world.app.uow(), world.app.clock)
    await remove.execute(
        RemoveMember(user_id=world.ada.id, project_id=world.project.id, member_id=world.vic.id)
    )
    with pytest.raises(ChatSessionNotFound):  # read fresh: removed since the chat was read
        await world.attach(vic_pass)


async def test_a_pass_admits_only_the_reader_it_names(world: World) -> None:
    vic_pass = await world.pass_for(world.vic.id)

    with pytest.raises(ChatSessionNotFound):
        await world.attach(vic_pass, world.bob.id)
    with pytest.raises(ChatSessionNotFound):
        await world.attach(vic_pass, world.ada.id)  # even the session's own user


async def test_the_session_users_pass_and_id_admit_them(world: World) -> None:
    assert await world.attach(await world.pass_for(world.ada.id)) == world.session
    assert await world.attach(world.session.id) == world.session  # the start gave ada the id


async def test_a_pass_expires_and_a_pass_outlives_no_session(world: World) -> None:
    vic_pass = await world.pass_for(world.vic.id)

    app = world.app
    app.clock.advance(STREAM_PASS_TTL)
    renewed = msgspec.structs.replace(world.session, expires_at=app.clock.now() + STREAM_PASS_TTL)
    await app.sessions.save(renewed, app.clock.now())  # the session lives on, the pass does not
    with pytest.raises(ChatSessionNotFound):
        await world.attach(vic_pass)
    fresh = await world.pass_for(world.vic.id)
    assert await world.attach(fresh) == renewed
    await app.sessions.delete(world.session.id)
    with pytest.raises(ChatSessionNotFound):
        await world.attach(fresh)


async def test_a_pass_names_the_reply_to_stop_and_the_callers_rights_decide(
    world: World,
) -> None:
    app = world.app
    editor = await app.user("eve")
    await app.run(
        AddMember(
            user_id=world.ada.id, project_id=world.project.id, email=editor.email,
            role=MemberRole.EDITOR,
        )
    )  # fmt: skip
    vic_pass, eve_pass = await world.pass_for(world.vic.id), await world.pass_for(editor.id)

    with pytest.raises(PermissionDenied):  # vic may read, not write
        await world.stop(vic_pass, world.vic.id)
    with pytest.raises(ChatSessionNotFound):  # eve's pass in bob's hands
        await world.stop(eve_pass, world.bob.id)
    assert await world.stream.stops_requested([world.session.id]) == set()

    await world.stop(eve_pass, editor.id)
    assert await world.stream.stops_requested([world.session.id]) == {world.session.id}


# --- the start's fresh read, relied on just after it ----------------------------------------------
async def _disable(app: App, user_id: uuid.UUID) -> None:
    async with app.uow() as uow:
        user = await uow.users.get(user_id)
        user.disabled = True
        await uow.users.update(user)
        await uow.commit()


async def _personal_session(
    app: App, *, read_before: timedelta = timedelta(0), process: str = THIS_PROCESS
) -> tuple[uuid.UUID, ChatSession]:
    """Ada's session, started just now in her personal project by a request whose
    authentication read her ``read_before`` earlier, in ``process``."""
    ada = await app.user("ada")
    personal = await app.run(EnsurePersonalProject(user_id=ada.id))
    chat = await app.chat(personal, ada)
    _, opened = await reply_with_session(app, chat, ada, MessageStatus.STREAMING)
    session = msgspec.structs.replace(
        opened,
        user_read_at=app.clock.now() - read_before,
        user_read_by=process,
    )
    await app.sessions.save(session, app.clock.now())
    return ada.id, session


async def attach(app: App, value: str, caller: uuid.UUID | None = None) -> ChatSession:
    handler = AttachStreamHandler(app.sessions, app.uow(), passes, app.clock)
    return await handler.execute(AttachStream(session_id=value, user_id=caller))


async def test_just_after_its_start_a_session_id_relies_on_the_starts_read_of_its_user() -> None:
    """The EventSource a chat app opens right after a start: the start read the user fresh
    moments ago (a disabled account was refused there), so no second read is made; an attach
    later than ``START_READ_GRACE`` reads the user fresh again."""
    app = App()
    ada, session = await _personal_session(app)
    await _disable(app, ada)  # (by an admin, between the start and the attach)

    app.clock.advance(START_READ_GRACE)
    assert await attach(app, session.id) == session  # not read: the start's read stands

    app.clock.advance(timedelta(milliseconds=1))
    with pytest.raises(ChatSessionNotFound):
        await attach(app, session.id)


@pytest.mark.parametrize(
    ("read_before", "process"),
    [(timedelta(seconds=3), THIS_PROCESS), (timedelta(0), "another-api-process")],
    ids=["read_long_before_the_start_opened_it", "read_by_another_process"],
)
async def test_only_a_read_made_here_moments_ago_is_relied_on(
    read_before: timedelta, process: str
) -> None:
    """A start whose body came slowly (or that waited for its files) read the user long
    before it opened the session; another process's read was timed by another clock."""
    app = App()
    ada, session = await _personal_session(app, read_before=read_before, process=process)
    await _disable(app, ada)

    with pytest.raises(ChatSessionNotFound):
        await attach(app, session.id)


async def test_a_session_that_does_not_say_when_its_user_was_read_reads_them() -> None:
    app = App()
    ada, session = await _personal_session(app)
    await app.sessions.save(
        msgspec.structs.replace(session, user_read_at=None, user_read_by=None), app.clock.now()
    )
    await _disable(app, ada)

    with pytest.raises(ChatSessionNotFound):
        await attach(app, session.id)


async def test_a_pass_or_a_membership_read_just_after_the_start_reads_the_user_too() -> None:
    app = App()
    app.passes = passes
    world = World(app)
    await world.setup()  # ada's session, in a project shared with vic, started just now
    read_here = msgspec.structs.replace(
        world.session, user_read_at=app.clock.now(), user_read_by=THIS_PROCESS
    )
    await app.sessions.save(read_here, app.clock.now())
    vic_pass = await world.pass_for(world.vic.id)
    await _disable(app, world.ada.id)
    await _disable(app, world.vic.id)

    with pytest.raises(ChatSessionNotFound):  # a shared project: her membership is read
        await world.attach(world.session.id)
    with pytest.raises(ChatSessionNotFound):  # a pass: its reader is read
        await world.attach(vic_pass)
