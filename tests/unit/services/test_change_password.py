"""ChangePassword and UpdateProfile on the in-memory unit of work, real JWTs, a manual clock."""

from __future__ import annotations

import uuid

import pytest

from tests.unit.services.test_auth import INVALID, NOT_CORRECT, PASSWORD, REFRESH_TTL, Auth
from whalli.domain.model.api_keys import API_KEY_PREFIX, ApiKey
from whalli.domain.model.errors import (
    ApiKeyNotAllowed,
    InvalidCredentials,
    InvalidPassword,
    InvalidToken,
    UserNotFound,
)
from whalli.domain.model.users import User
from whalli.domain.services.auth.change_password import ChangePassword, ChangePasswordHandler
from whalli.domain.services.auth.sessions import TokenPair
from whalli.domain.services.auth.update_profile import UpdateProfile, UpdateProfileHandler

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def auth() -> Auth:
    return Auth()


async def _change(
    auth: Auth,
    user: User,
    current: str = PASSWORD,
    new: str = NEW_PASSWORD,
    *,
    api_key_id: uuid.UUID | None = None,
) -> TokenPair:
    handler = ChangePasswordHandler(
        auth.uow(), hasher=auth.hasher, screen=auth.screen, issuer=auth.issuer, clock=auth.clock,
        ids=auth.ids, refresh_ttl=REFRESH_TTL,
    )  # fmt: skip
    command = ChangePassword(
        user_id=user.id, current_password=current, new_password=new, api_key_id=api_key_id
    )
    return await handler.execute(command)


async def _rename(auth: Auth, user: User, name: str | None) -> User:
    handler = UpdateProfileHandler(auth.uow(), auth.clock)
    return (await handler.execute(UpdateProfile(user_id=user.id, name=name))).user


# --- change password -----------------------------------------------------------------------------
async def test_changing_the_password_ends_every_session_and_opens_a_new_one_for_the_caller(
    auth: Auth,
) -> None:
    user, first = await auth.register()
    second = await auth.login()
    _, bystander = await auth.register("bob@example.com")

    tokens = await _change(auth, user)

    for old in (first, second):
        with pytest.raises(InvalidToken, match=INVALID):
            await auth.authenticate(old.access_token)
        with pytest.raises(InvalidToken, match=INVALID):
            await auth.refresh(old.refresh_token)
    assert (await auth.authenticate(tokens.access_token)).user_id == user.id
    assert (await auth.refresh(tokens.refresh_token)).token_type == "Bearer"
    assert (await auth.authenticate(bystander.access_token)).user.email == "bob@example.com"
    with pytest.raises(InvalidCredentials, match=NOT_CORRECT):
        await auth.login(password=PASSWORD)
    await auth.login(password=NEW_PASSWORD)
    stored = await auth.user()
    assert auth.hasher.verify(stored.password_hash or "", NEW_PASSWORD)
    assert stored.updated_at == auth.clock.now()


async def test_a_wrong_current_password_changes_nothing(auth: Auth) -> None:
    user, tokens = await auth.register()

    with pytest.raises(InvalidCredentials, match=NOT_CORRECT):
        await _change(auth, user, current="not the password")
    with pytest.raises(InvalidCredentials, match=NOT_CORRECT):
        await _change(auth, user, current="x" * 10_000)

    assert (await auth.user()).password_hash == user.password_hash
    assert [t.revoked_at for t in auth.tokens()] == [None]
    assert (await auth.authenticate(tokens.access_token)).user_id == user.id


async def test_an_account_without_a_password_gets_the_same_error_after_a_dummy_verification(
    auth: Auth,
) -> None:
    user, _ = await auth.register()
    await auth.change_user(user, password_hash=None)
    before = auth.hasher.dummy_verifications

    with pytest.raises(InvalidCredentials, match=NOT_CORRECT):
        await _change(auth, user)

    assert auth.hasher.dummy_verifications == before + 1
    assert (await auth.user()).password_hash is None


async def test_a_disabled_account_cannot_change_its_password(auth: Auth) -> None:
    user, _ = await auth.register()
    await auth.change_user(user, disabled=True)

    with pytest.raises(InvalidCredentials, match=NOT_CORRECT):
        await _change(auth, user)

    assert (await auth.user()).password_hash == user.password_hash


@pytest.mark.parametrize(
    ("new", "rule", "message"),
    [
        ("password123", "common", "most common passwords"),
        ("short", "min_length", "at least 8"),
        (PASSWORD, "unchanged", "differ from the current one"),
    ],
)
async def test_a_new_password_breaking_the_policy_is_refused_by_rule_and_changes_nothing(
    auth: Auth, new: str, rule: str, message: str
) -> None:
    user, tokens = await auth.register()

    with pytest.raises(InvalidPassword, match=message) as info:
        await _change(auth, user, new=new)

    assert info.value.details["rule"] == rule
    assert new not in f"{info.value} {info.value.details}"
    assert (await auth.user()).password_hash == user.password_hash
    assert (await auth.authenticate(tokens.access_token)).user_id == user.id


async def test_a_breached_new_password_is_refused(auth: Auth) -> None:
    user, _ = await auth.register()

    with pytest.raises(InvalidPassword, match="data breach"):
        await _change(auth, user, new="in the breach corpus 1")

    assert (await auth.user()).password_hash == user.password_hash


async def test_an_api_key_cannot_change_the_password(auth: Auth) -> None:
    user, tokens = await auth.register()

    with pytest.raises(ApiKeyNotAllowed, match="API key cannot change"):
        await _change(auth, user, api_key_id=uuid.uuid4())

    assert (await auth.user()).password_hash == user.password_hash
    assert (await auth.authenticate(tokens.access_token)).user_id == user.id


async def test_api_keys_keep_working_after_a_password_change(auth: Auth) -> None:
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "p" * 43
    key = ApiKey.create(
        id=auth.ids.new_id(), user_id=user.id, name="ci", secret=secret, now=auth.clock.now()
    )
    async with auth.uow() as uow:
        await uow.api_keys.add(key)
        await uow.commit()

    await _change(auth, user)

    assert (await auth.authenticate(secret)).api_key_id == key.id


async def test_a_password_changed_meanwhile_is_not_overwritten(auth: Auth) -> None:
    user, _ = await auth.register()
    elsewhere = auth.hasher.hash("changed in another request")

    class ChangesMeanwhile(ChangePasswordHandler):
        async def _check_current(self, command: ChangePassword) -> User:
            checked = await super()._check_current(command)
            await auth.change_user(user, password_hash=elsewhere)
            return checked

    handler = ChangesMeanwhile(
        auth.uow(), hasher=auth.hasher, screen=auth.screen, issuer=auth.issuer, clock=auth.clock,
        ids=auth.ids, refresh_ttl=REFRESH_TTL,
    )  # fmt: skip
    command = ChangePassword(user_id=user.id, current_password=PASSWORD, new_password=NEW_PASSWORD)
    with pytest.raises(InvalidCredentials, match=NOT_CORRECT):
        await handler.execute(command)

    assert (await auth.user()).password_hash == elsewhere
    assert [t.revoked_at for t in auth.tokens()] == [None]


def test_the_change_password_command_never_shows_its_passwords() -> None:
    command = ChangePassword(
        user_id=uuid.uuid4(), current_password="hunter2hunter2", new_password="swordfish99"
    )

    assert "hunter2" not in repr(command)
    assert "swordfish" not in repr(command)


# --- update profile ------------------------------------------------------------------------------
async def test_renaming_trims_and_caps_the_name_as_sign_up_does(auth: Auth) -> None:
    user, _ = await auth.register()
    later = auth.clock.advance(5)

    renamed = await _rename(auth, user, "  Ada Lovelace  ")
    assert renamed.name == "Ada Lovelace"
    assert (await auth.user()).name == "Ada Lovelace"
    assert (await auth.user()).updated_at == later

    assert (await _rename(auth, user, "x" * 300)).name == "x" * 200
    assert (await _rename(auth, user, "   ")).name == ""
    assert (await auth.user()).name == ""


async def test_a_rename_that_changes_nothing_is_not_written(auth: Auth) -> None:
    user, _ = await auth.register()
    await _rename(auth, user, "Ada")
    written = (await auth.user()).updated_at
    auth.clock.advance(5)

    assert (await _rename(auth, user, " Ada ")).name == "Ada"
    assert (await _rename(auth, user, None)).name == "Ada"
    assert (await auth.user()).updated_at == written


async def test_renaming_an_unknown_account_is_not_found(auth: Auth) -> None:
    ghost = User.create(id=uuid.uuid4(), email="ghost@example.com", now=auth.clock.now())

    with pytest.raises(UserNotFound, match="User not found"):
        await _rename(auth, ghost, "Boo")
