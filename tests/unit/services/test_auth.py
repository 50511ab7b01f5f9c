"""Account and session use cases on the in-memory unit of work, real JWTs, a manual clock."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Self

import pytest

from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.password_hasher import FastPasswordHasher
from whalli.adapters.memory.password_screen import ListedPasswordScreen
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.passwords.chain import PasswordScreenChain
from whalli.adapters.passwords.common_list import CommonPasswordList
from whalli.domain.model.api_keys import API_KEY_PREFIX, ApiKey
from whalli.domain.model.errors import (
    EmailAlreadyRegistered,
    InvalidCredentials,
    InvalidPassword,
    InvalidToken,
    RefreshTokenReused,
    ServiceUnavailable,
)
from whalli.domain.model.principal import Principal
from whalli.domain.model.projects import Project
from whalli.domain.model.tokens import RefreshToken
from whalli.domain.model.users import Plan, Role, User
from whalli.domain.services.auth.authenticate import (
    LAST_USED_INTERVAL,
    Authenticate,
    AuthenticateHandler,
)
from whalli.domain.services.auth.create_user import CreateUser, CreateUserHandler
from whalli.domain.services.auth.key_owners import KeyOwners
from whalli.domain.services.auth.login import Login, LoginHandler
from whalli.domain.services.auth.logout import Logout, LogoutHandler
from whalli.domain.services.auth.logout_all import LogoutAll, LogoutAllHandler
from whalli.domain.services.auth.refresh_session import RefreshSession, RefreshSessionHandler
from whalli.domain.services.auth.register import Register, RegisterHandler
from whalli.domain.services.auth.sessions import TokenPair

PASSWORD = "correct horse battery"
BREACHED = "in the breach corpus 1"
NOT_CORRECT = "The email or password is not correct."
INVALID = "The token is invalid or has expired."
REFRESH_TTL = timedelta(days=30)


class Auth:
    """The auth use cases over one store; every call gets a fresh unit of work."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.ids = SequentialIds()
        self.hasher = FastPasswordHasher()
        # the real list of common passwords, and a breach corpus of one password
        self.breaches = ListedPasswordScreen(breached=[BREACHED])
        self.screen = PasswordScreenChain([CommonPasswordList(), self.breaches])
        self.issuer = JwtAccessTokenIssuer(
            secret="s" * 32, issuer="whalli", audience="whalli-api", clock=self.clock
        )

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    async def register(self, email: str = "ada@example.com", **kw: str) -> tuple[User, TokenPair]:
        handler = RegisterHandler(
            self.uow(), hasher=self.hasher, screen=self.screen, issuer=self.issuer,
            clock=self.clock, ids=self.ids, refresh_ttl=REFRESH_TTL,
        )  # fmt: skip
        return await handler.execute(Register(email=email, password=kw.get("password", PASSWORD)))

    async def login(self, email: str = "ada@example.com", password: str = PASSWORD) -> TokenPair:
        handler = LoginHandler(
            self.uow(), hasher=self.hasher, issuer=self.issuer, clock=self.clock, ids=self.ids,
            refresh_ttl=REFRESH_TTL,
        )  # fmt: skip
        return await handler.execute(Login(email=email, password=password))

    async def refresh(self, token: str, grace: timedelta = timedelta(0)) -> TokenPair:
        handler = RefreshSessionHandler(
            self.uow(), issuer=self.issuer, clock=self.clock, ids=self.ids, reuse_grace=grace
        )
        return await handler.execute(RefreshSession(refresh_token=token))

    async def logout(self, token: str) -> None:
        await LogoutHandler(self.uow(), clock=self.clock).execute(Logout(refresh_token=token))

    async def logout_all(self, user: User) -> int:
        handler = LogoutAllHandler(self.uow(), clock=self.clock)
        return await handler.execute(LogoutAll(user_id=user.id))

    async def authenticate(self, credential: str) -> Principal:
        handler = AuthenticateHandler(self.uow(), issuer=self.issuer, clock=self.clock)
        return await handler.execute(Authenticate(credential=credential))

    async def create_user(self, email: str, *, admin: bool, password: str = PASSWORD) -> User:
        handler = CreateUserHandler(
            self.uow(), hasher=self.hasher, screen=self.screen, clock=self.clock, ids=self.ids
        )
        return await handler.execute(CreateUser(email=email, password=password, admin=admin))

    async def user(self, email: str = "ada@example.com") -> User:
        async with self.uow() as uow:
            found = await uow.users.find_by_email(email)
        assert found is not None
        return found

    async def change_user(self, user: User, **changes: object) -> None:
        async with self.uow() as uow:
            fresh = await uow.users.get(user.id)
            for name, value in changes.items():
                setattr(fresh, name, value)
            await uow.users.update(fresh)
            await uow.commit()

    async def projects(self, user: User) -> list[Project]:
        async with self.uow() as uow:
            return await uow.projects.list_for_user(user.id)

    def tokens(self) -> list[RefreshToken]:
        return list(self.store.tables["refresh_tokens"].values())


@pytest.fixture
def auth() -> Auth:
    return Auth()


# --- register ------------------------------------------------------------------------------------
async def test_registering_creates_a_free_user_with_a_personal_project_and_a_working_session(
    auth: Auth,
) -> None:
    user, tokens = await auth.register("  Ada@Example.COM ")

    assert (user.email, user.role, user.plan) == ("ada@example.com", Role.USER, Plan.FREE)
    assert auth.hasher.verify(user.password_hash or "", PASSWORD)
    [project] = await auth.projects(user)
    assert project.personal
    assert project.owner_id == user.id
    assert tokens.token_type == "Bearer"
    assert tokens.expires_in == 900
    principal = await auth.authenticate(tokens.access_token)
    assert principal.user_id == user.id
    assert principal.session_id == auth.tokens()[0].family_id


async def test_registering_a_taken_email_is_a_conflict_that_leaves_nothing_behind(
    auth: Auth,
) -> None:
    await auth.register("ada@example.com")

    with pytest.raises(EmailAlreadyRegistered, match="already exists"):
        await auth.register("ADA@example.com")

    assert len(auth.store.tables["users"]) == 1
    assert len(auth.store.tables["projects"]) == 1
    assert len(auth.tokens()) == 1


async def test_an_address_an_older_account_holds_in_its_ascii_spelling_is_taken(
    auth: Auth,
) -> None:
    """Before domains were decoded an account kept its domain as typed: an A-label spelling
    of the same mailbox registers no second account, and signs in to the first."""
    legacy, _ = await auth.register("ada@example.com")
    await auth.change_user(legacy, email="ada@xn--bcher-kva.example")

    with pytest.raises(EmailAlreadyRegistered, match="already exists"):
        await auth.register("Ada@B\u00fccher.example")

    assert len(auth.store.tables["users"]) == 1
    assert (await auth.user("ada@b\u00fccher.example")).id == legacy.id


async def test_a_password_breaking_the_policy_is_refused_before_anything_is_stored(
    auth: Auth,
) -> None:
    with pytest.raises(InvalidPassword, match="at least 8"):
        await auth.register(password="short")

    assert auth.store.tables["users"] == {}


@pytest.mark.parametrize("password", ["password123", "qwertyuiop", "QwertyUIOP", "iloveyou"])
async def test_a_common_password_is_refused_by_name_without_echoing_it(
    auth: Auth, password: str
) -> None:
    with pytest.raises(InvalidPassword, match="most common passwords") as info:
        await auth.register(password=password)

    assert info.value.details["rule"] == "common"
    shown = f"{info.value} {info.value.message} {info.value.details}".lower()
    assert password.lower() not in shown
    assert auth.store.tables["users"] == {}
    assert auth.store.tables["projects"] == {}
    assert auth.breaches.screened == 0  # the offline list answered first


async def test_a_breached_password_is_refused_by_name_without_echoing_it(auth: Auth) -> None:
    with pytest.raises(InvalidPassword, match="data breach") as info:
        await auth.register(password=BREACHED)

    assert info.value.details["rule"] == "breached"
    assert BREACHED not in f"{info.value} {info.value.details}"
    assert auth.store.tables["users"] == {}


async def test_a_strong_random_password_passes_the_screen(auth: Auth) -> None:
    password = secrets.token_urlsafe(18)

    user, _ = await auth.register(password=password)

    assert auth.hasher.verify(user.password_hash or "", password)
    assert auth.breaches.screened == 1


async def test_an_operator_made_account_gets_the_same_screen(auth: Auth) -> None:
    with pytest.raises(InvalidPassword, match="most common passwords") as info:
        await auth.create_user("root@example.com", admin=True, password="password123")

    assert info.value.details["rule"] == "common"
    assert auth.store.tables["users"] == {}


async def test_sign_up_never_makes_an_admin_even_for_concurrent_first_users(auth: Auth) -> None:
    (first, _), (second, _) = await asyncio.gather(
        auth.register("first@example.com"), auth.register("second@example.com")
    )

    assert first.role is second.role is Role.USER
    assert all(not u.is_admin for u in auth.store.tables["users"].values())


# --- login ---------------------------------------------------------------------------------------
async def test_logging_in_opens_a_new_session_each_time(auth: Auth) -> None:
    user, registered = await auth.register()

    tokens = await auth.login("ADA@example.com", PASSWORD)

    principal = await auth.authenticate(tokens.access_token)
    assert principal.user_id == user.id
    assert len({t.family_id for t in auth.tokens()}) == 2
    assert tokens.refresh_token != registered.refresh_token


async def test_an_unknown_email_and_a_wrong_password_give_the_same_error(auth: Auth) -> None:
    await auth.register()

    with pytest.raises(InvalidCredentials, match=NOT_CORRECT) as wrong:
        await auth.login(password="not the password")
    assert auth.hasher.dummy_verifications == 0
    with pytest.raises(InvalidCredentials, match=NOT_CORRECT) as unknown:
        await auth.login(email="nobody@example.com")

    assert auth.hasher.dummy_verifications == 1  # the unknown email still paid for a verify
    assert (wrong.value.code, wrong.value.details) == (unknown.value.code, unknown.value.details)


async def test_a_malformed_email_at_login_is_just_wrong_credentials(auth: Auth) -> None:
    with pytest.raises(InvalidCredentials, match=NOT_CORRECT):
        await auth.login(email="not an email")

    assert auth.hasher.dummy_verifications == 1


async def test_a_disabled_account_cannot_log_in_even_with_the_right_password(auth: Auth) -> None:
    user, _ = await auth.register()
    await auth.change_user(user, disabled=True)

    with pytest.raises(InvalidCredentials, match=NOT_CORRECT):
        await auth.login()

    assert len(auth.tokens()) == 1  # only the sign-up session


async def test_logging_in_rehashes_a_password_hashed_with_weaker_parameters(auth: Auth) -> None:
    await auth.register()
    auth.hasher.cost = 3

    await auth.login()

    stored = (await auth.user()).password_hash or ""
    assert stored.startswith("fake$3$")
    assert not auth.hasher.needs_rehash(stored)
    await auth.login()  # the new hash verifies


async def test_a_failed_login_does_not_rehash(auth: Auth) -> None:
    user, _ = await auth.register()
    auth.hasher.cost = 3

    with pytest.raises(InvalidCredentials, match=NOT_CORRECT):
        await auth.login(password="not the password")

    assert (await auth.user()).password_hash == user.password_hash


# --- refresh -------------------------------------------------------------------------------------
async def test_refreshing_rotates_the_token_within_the_family_and_keeps_its_expiry(
    auth: Auth,
) -> None:
    _, first = await auth.register()
    auth.clock.advance(timedelta(hours=1))

    second = await auth.refresh(first.refresh_token)

    spent, successor = sorted(auth.tokens(), key=lambda t: t.created_at)
    assert spent.used_at == auth.clock.now()
    assert successor.parent_id == spent.id
    assert successor.family_id == spent.family_id
    assert successor.expires_at == spent.expires_at
    assert second.refresh_token != first.refresh_token
    assert (await auth.authenticate(second.access_token)).session_id == spent.family_id


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(auth: Auth) -> None:
    _, first = await auth.register()
    second = await auth.refresh(first.refresh_token)

    with pytest.raises(RefreshTokenReused, match=INVALID):
        await auth.refresh(first.refresh_token)

    assert all(t.revoked_at is not None for t in auth.tokens())
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.refresh(second.refresh_token)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(second.access_token)


async def test_two_concurrent_refreshes_of_one_token_let_only_one_through(auth: Auth) -> None:
    _, first = await auth.register()

    results = await asyncio.gather(
        auth.refresh(first.refresh_token), auth.refresh(first.refresh_token),
        return_exceptions=True,
    )  # fmt: skip

    assert sorted(type(r).__name__ for r in results) == ["RefreshTokenReused", "TokenPair"]
    assert all(t.revoked_at is not None for t in auth.tokens())


async def test_two_tabs_refreshing_one_token_at_once_both_stay_signed_in(auth: Auth) -> None:
    """Within the grace window the second refresh of one token gets its own pair; both
    successors work, each once, and a third use after the window ends the whole session."""
    _, first = await auth.register()
    grace = timedelta(seconds=10)

    tab_a, tab_b = await asyncio.gather(
        auth.refresh(first.refresh_token, grace), auth.refresh(first.refresh_token, grace)
    )

    assert tab_a.refresh_token != tab_b.refresh_token
    assert {t.parent_id for t in auth.tokens() if t.parent_id} == {
        t.id for t in auth.tokens() if t.parent_id is None
    }
    assert all(t.revoked_at is None for t in auth.tokens())
    for pair in (tab_a, tab_b):
        await auth.authenticate(pair.access_token)
    auth.clock.advance(timedelta(seconds=9))
    again_a = await auth.refresh(tab_a.refresh_token, grace)
    again_b = await auth.refresh(tab_b.refresh_token, grace)
    assert again_a.refresh_token != again_b.refresh_token

    auth.clock.advance(timedelta(seconds=11))  # the first token's window closed long ago
    with pytest.raises(RefreshTokenReused, match=INVALID):
        await auth.refresh(first.refresh_token, grace)
    assert all(t.revoked_at is not None for t in auth.tokens())
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.refresh(again_b.refresh_token, grace)


async def test_the_grace_window_revives_no_session_that_ended(auth: Auth) -> None:
    _, first = await auth.register()
    grace = timedelta(seconds=10)
    second = await auth.refresh(first.refresh_token, grace)
    await auth.logout(second.refresh_token)

    with pytest.raises(RefreshTokenReused, match=INVALID):
        await auth.refresh(first.refresh_token, grace)
    assert all(t.revoked_at is not None for t in auth.tokens())


async def test_an_unknown_or_expired_refresh_token_is_invalid(auth: Auth) -> None:
    _, tokens = await auth.register()

    with pytest.raises(InvalidToken, match=INVALID):
        await auth.refresh("tok" + "9" * 40)
    auth.clock.advance(REFRESH_TTL)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.refresh(tokens.refresh_token)


async def test_a_disabled_user_can_neither_refresh_nor_use_an_access_token(auth: Auth) -> None:
    user, tokens = await auth.register()
    await auth.change_user(user, disabled=True)

    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(tokens.access_token)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.refresh(tokens.refresh_token)


# --- logout --------------------------------------------------------------------------------------
async def test_logging_out_ends_the_access_token_at_its_next_use(auth: Auth) -> None:
    _, tokens = await auth.register()
    other = await auth.login()

    await auth.logout(tokens.refresh_token)

    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(tokens.access_token)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.refresh(tokens.refresh_token)
    assert (await auth.authenticate(other.access_token)).session_id is not None


async def test_logging_out_is_idempotent_and_silent_about_unknown_tokens(auth: Auth) -> None:
    _, tokens = await auth.register()

    await auth.logout(tokens.refresh_token)
    await auth.logout(tokens.refresh_token)
    await auth.logout("tok" + "9" * 40)
    await auth.logout("")

    assert [t.revoked_at is not None for t in auth.tokens()] == [True]


async def test_logging_out_everywhere_ends_every_session_of_that_user_only(auth: Auth) -> None:
    user, first = await auth.register()
    second = await auth.login()
    _, bystander = await auth.register("bob@example.com")

    assert await auth.logout_all(user) == 2

    for tokens in (first, second):
        with pytest.raises(InvalidToken, match=INVALID):
            await auth.authenticate(tokens.access_token)
    assert (await auth.authenticate(bystander.access_token)).user.email == "bob@example.com"


# --- authenticate --------------------------------------------------------------------------------
async def test_the_principal_is_read_fresh_so_a_demoted_admin_is_a_user_on_the_next_call(
    auth: Auth,
) -> None:
    admin = await auth.create_user("root@example.com", admin=True)
    tokens = await auth.login("root@example.com")
    assert (await auth.authenticate(tokens.access_token)).user.is_admin

    await auth.change_user(admin, role=Role.USER, plan=Plan.PRO)

    principal = await auth.authenticate(tokens.access_token)
    assert (principal.user.role, principal.user.plan) == (Role.USER, Plan.PRO)


async def test_an_expired_or_forged_access_token_fails_with_one_generic_message(
    auth: Auth,
) -> None:
    _, tokens = await auth.register()
    head, body, signature = tokens.access_token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}AA"

    failures = []
    for credential in (forged, "not-a-jwt", ""):
        with pytest.raises(InvalidToken, match=INVALID) as error:
            await auth.authenticate(credential)
        failures.append((error.value.message, error.value.details))
    auth.clock.advance(timedelta(minutes=16))
    with pytest.raises(InvalidToken, match=INVALID) as expired:
        await auth.authenticate(tokens.access_token)

    assert failures == [(INVALID, {})] * 3  # the issuer's reason is not passed on
    assert expired.value.details == {}


async def test_a_claimed_user_is_only_what_a_genuine_token_names_not_an_authentication(
    auth: Auth,
) -> None:
    user, tokens = await auth.register()
    handler = AuthenticateHandler(auth.uow(), issuer=auth.issuer, clock=auth.clock)
    head, body, signature = tokens.access_token.split(".")

    assert handler.claimed_user(tokens.access_token) == user.id
    for credential in (
        f"{head}.{body}.{signature[:-2]}AA",
        "not-a-jwt",
        "",
        API_KEY_PREFIX + "k" * 43,
    ):
        assert handler.claimed_user(credential) is None
    # the account is disabled: the token still names its user, and still fails to authenticate
    await auth.change_user(user, disabled=True)
    assert handler.claimed_user(tokens.access_token) == user.id
    with pytest.raises(InvalidToken, match=INVALID):
        await handler.execute(Authenticate(credential=tokens.access_token))
    auth.clock.advance(timedelta(minutes=16))
    assert handler.claimed_user(tokens.access_token) is None  # expired


async def test_an_api_key_claims_its_owner_once_this_process_accepted_it(auth: Auth) -> None:
    secret = API_KEY_PREFIX + "o" * 43
    key = await _stored_key(auth, secret)
    owners = KeyOwners()

    def handler() -> AuthenticateHandler:  # one per request, the hint shared by all
        return AuthenticateHandler(
            auth.uow(), issuer=auth.issuer, clock=auth.clock, key_owners=owners
        )

    assert handler().claimed_user(secret) is None  # never seen: nobody to charge early
    with pytest.raises(InvalidToken, match=INVALID):
        await handler().execute(Authenticate(credential=API_KEY_PREFIX + "x" * 43))
    assert len(owners) == 0  # a refused key is never remembered

    await handler().execute(Authenticate(credential=secret))
    assert handler().claimed_user(secret) == key.user_id

    # revoked: it still names its owner (a rate-limit hint only) and is refused by the database
    async with auth.uow() as uow:
        stored = await uow.api_keys.get(key.id)
        stored.revoke(auth.clock.now())
        await uow.api_keys.update(stored)
        await uow.commit()
    assert handler().claimed_user(secret) == key.user_id
    with pytest.raises(InvalidToken, match=INVALID):
        await handler().execute(Authenticate(credential=secret))


def test_key_owners_keep_the_most_recently_used_within_their_size() -> None:
    owners = KeyOwners(size=2)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    owners.remember("a", a)
    owners.remember("b", b)
    assert owners.owner("a") == a  # used: now the most recent
    owners.remember("c", c)

    assert (owners.owner("a"), owners.owner("b"), owners.owner("c")) == (a, None, c)
    assert len(owners) == 2
    with pytest.raises(ValueError, match="at least 1"):
        KeyOwners(size=0)


async def test_an_api_key_authenticates_while_active_and_its_user_is_enabled(auth: Auth) -> None:
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "k" * 43
    key = ApiKey.create(
        id=auth.ids.new_id(), user_id=user.id, name="ci", secret=secret, now=auth.clock.now()
    )
    async with auth.uow() as uow:
        await uow.api_keys.add(key)
        await uow.commit()

    principal = await auth.authenticate(secret)
    assert (principal.user_id, principal.api_key_id, principal.session_id) == (
        user.id,
        key.id,
        None,
    )
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(API_KEY_PREFIX + "x" * 43)
    await auth.change_user(user, disabled=True)
    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(secret)


async def test_a_revoked_api_key_no_longer_authenticates(auth: Auth) -> None:
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "r" * 43
    key = ApiKey.create(
        id=auth.ids.new_id(), user_id=user.id, name="ci", secret=secret, now=auth.clock.now()
    )
    key.revoke(auth.clock.now())
    async with auth.uow() as uow:
        await uow.api_keys.add(key)
        await uow.commit()

    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(secret)


async def test_an_api_key_no_longer_authenticates_once_it_has_expired(auth: Auth) -> None:
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "e" * 43
    now = auth.clock.now()
    key = ApiKey.create(
        id=auth.ids.new_id(), user_id=user.id, name="ci", secret=secret, now=now,
        expires_at=now + timedelta(minutes=1),
    )  # fmt: skip
    async with auth.uow() as uow:
        await uow.api_keys.add(key)
        await uow.commit()
    assert (await auth.authenticate(secret)).api_key_id == key.id

    auth.clock.advance(timedelta(minutes=1))

    with pytest.raises(InvalidToken, match=INVALID):
        await auth.authenticate(secret)


async def _stored_key(auth: Auth, secret: str) -> ApiKey:
    user, _ = await auth.register()
    key = ApiKey.create(
        id=auth.ids.new_id(), user_id=user.id, name="ci", secret=secret, now=auth.clock.now()
    )
    async with auth.uow() as uow:
        await uow.api_keys.add(key)
        await uow.commit()
    return key


async def _last_used(auth: Auth, key: ApiKey) -> datetime | None:
    async with auth.uow() as uow:
        return (await uow.api_keys.get(key.id)).last_used_at


async def test_an_api_keys_last_use_is_recorded_at_most_once_per_interval(auth: Auth) -> None:
    secret = API_KEY_PREFIX + "u" * 43
    key = await _stored_key(auth, secret)
    first = auth.clock.now()

    await auth.authenticate(secret)
    assert await _last_used(auth, key) == first

    auth.clock.advance(LAST_USED_INTERVAL)  # not older than the interval yet
    await auth.authenticate(secret)
    assert await _last_used(auth, key) == first

    later = auth.clock.advance(1)
    await auth.authenticate(secret)
    assert await _last_used(auth, key) == later


async def test_the_last_use_interval_is_configurable(auth: Auth) -> None:
    secret = API_KEY_PREFIX + "i" * 43
    key = await _stored_key(auth, secret)
    handler = AuthenticateHandler(
        auth.uow(), issuer=auth.issuer, clock=auth.clock, last_used_interval=timedelta(seconds=5)
    )
    await handler.execute(Authenticate(credential=secret))
    later = auth.clock.advance(6)
    await handler.execute(Authenticate(credential=secret))
    assert await _last_used(auth, key) == later


class _WritesFail(InMemoryUnitOfWork):
    """Reads work, every write transaction fails as a database that went away would."""

    async def __aenter__(self) -> Self:
        raise ServiceUnavailable("The database is unavailable.")

    def autocommit(self) -> AbstractAsyncContextManager[Self]:
        raise ServiceUnavailable("The database is unavailable.")


async def test_a_failed_last_use_write_does_not_fail_the_request_nor_log_the_secret(
    auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    secret = API_KEY_PREFIX + "f" * 43
    key = await _stored_key(auth, secret)
    handler = AuthenticateHandler(_WritesFail(auth.store), issuer=auth.issuer, clock=auth.clock)

    with caplog.at_level(logging.WARNING):
        principal = await handler.execute(Authenticate(credential=secret))

    assert principal.api_key_id == key.id
    assert await _last_used(auth, key) is None
    assert str(key.id) in caplog.text
    assert "ServiceUnavailable" in caplog.text
    assert secret not in caplog.text
    assert key.key_hash not in caplog.text


# --- create user (CLI) ---------------------------------------------------------------------------
async def test_the_cli_use_case_can_create_an_admin_with_a_personal_project(auth: Auth) -> None:
    admin = await auth.create_user("Root@Example.com", admin=True)
    plain = await auth.create_user("someone@example.com", admin=False)

    assert (admin.email, admin.role, admin.email_verified) == ("root@example.com", Role.ADMIN, True)
    assert plain.role is Role.USER
    [project] = await auth.projects(admin)
    assert project.personal
    with pytest.raises(EmailAlreadyRegistered, match="already exists"):
        await auth.create_user("root@example.com", admin=False)


def test_commands_and_token_pairs_never_show_their_secrets() -> None:
    shown = repr(
        [
            Register(email="a@b.co", password="hunter2hunter2"),
            Login(email="a@b.co", password="hunter2hunter2"),
            RefreshSession(refresh_token="refresh-secret"),
            Authenticate(credential="bearer-secret"),
            TokenPair(access_token="bearer-secret", refresh_token="refresh-secret", expires_in=1),
        ]
    )

    assert "a@b.co" in shown
    for secret in ("hunter2", "refresh-secret", "bearer-secret"):
        assert secret not in shown
