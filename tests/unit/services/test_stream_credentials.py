"""A reply's session id or reader pass, used alone, admits its holder only while the login
session or API key it was handed out under is still in force."""

from __future__ import annotations

import uuid
from datetime import timedelta

import msgspec
import pytest

from tests.unit.services.test_chats import App
from tests.unit.services.test_stream_passes import World, _disable, _personal_session, passes
from whalli.domain.model.api_keys import ApiKey
from whalli.domain.model.chat_sessions import ChatSession
from whalli.domain.model.errors import ChatSessionNotFound
from whalli.domain.model.principal import CredentialId
from whalli.domain.model.tokens import RefreshToken
from whalli.domain.services.api_keys.revoke_api_key import RevokeApiKey, RevokeApiKeyHandler
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.credential_ends import CredentialEnds
from whalli.domain.services.auth.logout_all import LogoutAll, LogoutAllHandler
from whalli.domain.services.chat.attach_stream import (
    START_READ_GRACE,
    AttachStream,
    AttachStreamHandler,
)
from whalli.domain.services.chats.get_chat import GetChat


async def signed_in(app: App, user_id: uuid.UUID) -> CredentialId:
    """A new login session of the user (a refresh-token family)."""
    token = RefreshToken.issue(
        id=uuid.uuid4(), user_id=user_id, family_id=uuid.uuid4(), secret=uuid.uuid4().hex * 2,
        now=app.clock.now(),
    )  # fmt: skip
    async with app.uow() as uow:
        await uow.refresh_tokens.add(token)
        await uow.commit()
    return CredentialId(login_session_id=token.family_id)


async def keyed(app: App, user_id: uuid.UUID, **expiry: object) -> CredentialId:
    """A new API key of the user."""
    key = ApiKey.create(
        id=uuid.uuid4(), user_id=user_id, name="ci", secret="whk_" + "k" * 43,
        now=app.clock.now(), **expiry,  # type: ignore[arg-type]
    )  # fmt: skip
    async with app.uow() as uow:
        await uow.api_keys.add(key)
        await uow.commit()
    return CredentialId(api_key_id=key.id)


async def started_under(app: App, session: ChatSession, credential: CredentialId) -> ChatSession:
    started = msgspec.structs.replace(session, credential=credential)
    await app.sessions.save(started, app.clock.now())
    return started


async def attach(
    app: App,
    value: str,
    caller: uuid.UUID | None = None,
    *,
    ends: CredentialEnds | None = None,
) -> ChatSession:
    handler = AttachStreamHandler(app.sessions, app.uow(), passes, app.clock, ends=ends)
    return await handler.execute(AttachStream(session_id=value, user_id=caller))


async def revoke(
    app: App, credential: CredentialId, owner: uuid.UUID, ends: CredentialEnds
) -> None:
    """Revoked by the process whose ends are ``ends``."""
    assert credential.api_key_id is not None
    access = AccessChanges(ends=ends, clock=app.clock)
    handler = RevokeApiKeyHandler(app.uow(), app.clock, access=access)
    await handler.execute(RevokeApiKey(user_id=owner, key_id=credential.api_key_id))


@pytest.fixture
async def world() -> World:
    app = App()
    app.passes = passes
    made = World(app)
    await made.setup()  # ada's reply in a project shared with vic (a viewer)
    return made


async def test_a_session_id_alone_admits_nobody_once_its_login_session_ended(
    world: World,
) -> None:
    app, ada = world.app, world.ada
    session = await started_under(app, world.session, await signed_in(app, ada.id))
    assert await attach(app, session.id) == session

    await LogoutAllHandler(app.uow(), clock=app.clock).execute(LogoutAll(user_id=ada.id))

    with pytest.raises(ChatSessionNotFound, match="not found"):
        await attach(app, session.id)  # the id alone: the EventSource way
    assert await attach(app, session.id, ada.id) == session  # ada signed in again


@pytest.mark.parametrize("ended", ["revoked", "expired"])
async def test_a_session_id_alone_admits_nobody_once_its_api_key_ended(
    world: World, ended: str
) -> None:
    app, ada = world.app, world.ada
    credential = await keyed(app, ada.id, expires_at=app.clock.now() + timedelta(minutes=1))
    session = await started_under(app, world.session, credential)
    assert await attach(app, session.id) == session

    if ended == "revoked":
        await revoke(app, credential, ada.id, CredentialEnds())
    else:
        app.clock.advance(timedelta(minutes=1))  # (the session lives 10)

    with pytest.raises(ChatSessionNotFound, match="not found"):
        await attach(app, session.id)
    assert await attach(app, session.id, ada.id) == session


async def test_a_key_that_is_not_the_session_users_admits_nobody(world: World) -> None:
    app = world.app
    session = await started_under(app, world.session, await keyed(app, world.vic.id))

    with pytest.raises(ChatSessionNotFound, match="not found"):
        await attach(app, session.id)


async def test_a_pass_alone_admits_nobody_once_the_login_session_it_was_read_with_ended(
    world: World,
) -> None:
    app, vic = world.app, world.vic
    credential = await signed_in(app, vic.id)
    found = await app.run(GetChat(user_id=vic.id, chat_id=world.chat.id, credential=credential))
    vic_pass: str = found.live_sessions[world.reply.id]
    assert await attach(app, vic_pass) == world.session

    await LogoutAllHandler(app.uow(), clock=app.clock).execute(LogoutAll(user_id=vic.id))

    with pytest.raises(ChatSessionNotFound, match="not found"):
        await attach(app, vic_pass)
    assert await attach(app, vic_pass, vic.id) == world.session  # vic signed in again


async def test_a_session_recorded_without_its_credential_checks_its_user_alone(
    world: World,
) -> None:
    """Sessions stored before credentials were recorded still decode and admit their user
    while the account is not disabled."""
    app = world.app
    assert world.session.credential == CredentialId()
    assert await attach(app, world.session.id) == world.session

    await _disable(app, world.ada.id)
    with pytest.raises(ChatSessionNotFound, match="not found"):
        await attach(app, world.session.id)


# --- just after the start: the start's read is relied on, unless this process ended a key -------
async def test_just_after_its_start_a_key_revoked_by_this_process_is_seen() -> None:
    app = App()
    ada, opened = await _personal_session(app)
    credential = await keyed(app, ada)
    session = await started_under(app, opened, credential)
    here = CredentialEnds()
    assert await attach(app, session.id, ends=here) == session  # the start's read stands

    app.clock.advance(timedelta(milliseconds=100))
    await revoke(app, credential, ada, here)

    with pytest.raises(ChatSessionNotFound, match="not found"):  # read again, well within the grace
        await attach(app, session.id, ends=here)


async def test_just_after_its_start_an_end_made_by_another_process_is_not_seen() -> None:
    """What ``START_READ_GRACE`` documents: no read, so an end elsewhere shows once it is over."""
    app = App()
    ada, opened = await _personal_session(app)
    credential = await keyed(app, ada)
    session = await started_under(app, opened, credential)
    here, elsewhere = CredentialEnds(), CredentialEnds()
    await revoke(app, credential, ada, elsewhere)

    assert await attach(app, session.id, ends=here) == session
    app.clock.advance(START_READ_GRACE + timedelta(milliseconds=1))
    with pytest.raises(ChatSessionNotFound, match="not found"):
        await attach(app, session.id, ends=here)


async def test_an_end_before_the_starts_read_leaves_the_grace_alone() -> None:
    """A key revoked before the start read the user was refused there, if it was this key: a
    session started after it (with another credential) still needs no second read."""
    app = App()
    ada, opened = await _personal_session(app)
    here = CredentialEnds()
    here.ended(ada, app.clock.now() - timedelta(milliseconds=1))
    session = await started_under(app, opened, await keyed(app, ada))
    await _disable(app, ada)  # not read: proves the grace is taken

    assert await attach(app, session.id, ends=here) == session
