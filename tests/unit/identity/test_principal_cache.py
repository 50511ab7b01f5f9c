"""What a process remembers of recent credentials (``PrincipalCache``) and when authentication
trusts it: only while the user's credential version is the one read with it.

The use cases run on the in-memory unit of work, with a counter of the reads authentication
makes, real JWTs, a manual clock and in-memory credential versions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Self

import pytest

from tests.unit.services.test_auth import PASSWORD, Auth
from whalli.adapters.memory.credential_versions import InMemoryCredentialVersions
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.api_keys import API_KEY_PREFIX, ApiKey
from whalli.domain.model.errors import InvalidToken, ServiceUnavailable
from whalli.domain.model.principal import Principal
from whalli.domain.model.users import Plan, User
from whalli.domain.services.admin.update_user import UpdateUser, UpdateUserHandler
from whalli.domain.services.api_keys.revoke_api_key import RevokeApiKey, RevokeApiKeyHandler
from whalli.domain.services.auth.access_changes import AccessChanges
from whalli.domain.services.auth.authenticate import Authenticate, AuthenticateHandler
from whalli.domain.services.auth.credential_ends import CredentialEnds
from whalli.domain.services.auth.key_owners import KeyOwners
from whalli.domain.services.auth.logout import Logout, LogoutHandler
from whalli.domain.services.auth.principal_cache import KnownCredential, PrincipalCache
from whalli.domain.services.auth.register import Register, RegisterHandler
from whalli.domain.services.auth.update_profile import UpdateProfile, UpdateProfileHandler
from whalli.ports.credential_versions import CredentialVersions


class _CountedReads(InMemoryUnitOfWork):
    """Counts the read-only units of work (authentication's database reads)."""

    reads = 0

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[Self]:
        type(self).reads += 1
        async with super().read_only() as uow:
            yield uow


class _Process:
    """One API process: its cache, key owners and credential ends, the versions every
    process shares."""

    def __init__(self, auth: Auth, versions: CredentialVersions) -> None:
        self.auth, self.versions = auth, versions
        self.principals, self.owners, self.ends = PrincipalCache(), KeyOwners(), CredentialEnds()
        self.access = AccessChanges(versions, self.principals, ends=self.ends, clock=auth.clock)

    async def authenticate(self, credential: str) -> Principal:
        handler = AuthenticateHandler(
            _CountedReads(self.auth.store), issuer=self.auth.issuer, clock=self.auth.clock,
            key_owners=self.owners, principals=self.principals, versions=self.versions,
        )  # fmt: skip
        handler.claimed_user(credential)  # as the guard does before it
        return await handler.execute(Authenticate(credential=credential))


@pytest.fixture
def auth() -> Auth:
    _CountedReads.reads = 0
    return Auth()


def _reads() -> int:
    return _CountedReads.reads


async def _key(auth: Auth, user: User, secret: str, **kw: object) -> ApiKey:
    key = ApiKey.create(
        id=auth.ids.new_id(), user_id=user.id, name="ci", secret=secret, now=auth.clock.now(),
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    async with auth.uow() as uow:
        await uow.api_keys.add(key)
        await uow.commit()
    return key


async def test_an_api_key_is_read_until_its_owner_is_known_then_taken_from_memory(
    auth: Auth,
) -> None:
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "a" * 43
    key = await _key(auth, user, secret)
    process = _Process(auth, InMemoryCredentialVersions())

    # the first use names no owner before the read: nothing can be remembered safely
    await process.authenticate(secret)
    assert (_reads(), len(process.principals)) == (1, 0)
    # the owner known, the version is read before the database: the read is remembered
    await process.authenticate(secret)
    assert (_reads(), len(process.principals)) == (2, 1)
    # and trusted while the version holds
    principals = [await process.authenticate(secret) for _ in range(3)]
    assert _reads() == 2
    assert {(p.user_id, p.api_key_id) for p in principals} == {(user.id, key.id)}


async def test_a_bumped_version_makes_the_next_request_read_the_database_again(auth: Auth) -> None:
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "b" * 43
    await _key(auth, user, secret)
    versions = InMemoryCredentialVersions()
    process = _Process(auth, versions)
    for _ in range(3):
        await process.authenticate(secret)
    reads = _reads()

    await versions.bump(user.id)  # another process changed the account

    await process.authenticate(secret)
    assert _reads() == reads + 1
    await process.authenticate(secret)  # remembered again, with the new version
    assert _reads() == reads + 1


async def test_a_key_revoked_in_another_process_is_refused_at_the_next_request(
    auth: Auth,
) -> None:
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "r" * 43
    key = await _key(auth, user, secret)
    versions = InMemoryCredentialVersions()
    remembers, revokes = _Process(auth, versions), _Process(auth, versions)
    for _ in range(3):
        await remembers.authenticate(secret)

    handler = RevokeApiKeyHandler(auth.uow(), auth.clock, access=revokes.access)
    await handler.execute(RevokeApiKey(user_id=user.id, key_id=key.id))

    with pytest.raises(InvalidToken):
        await remembers.authenticate(secret)
    assert len(remembers.principals) == 0  # a refused key is forgotten


async def test_a_change_without_a_bump_is_not_seen_but_only_for_the_entry_s_lifetime(
    auth: Auth,
) -> None:
    """The bound on a change whose bump was lost (the store down just then)."""
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "m" * 43
    await _key(auth, user, secret)
    now = [0.0]
    process = _Process(auth, InMemoryCredentialVersions())
    process.principals = PrincipalCache(max_age_s=5.0, monotonic=lambda: now[0])
    for _ in range(2):
        await process.authenticate(secret)
    await auth.change_user(user, disabled=True)  # no AccessChanges: nobody bumped

    now[0] = 5.0
    await process.authenticate(secret)  # still trusted within its lifetime
    now[0] = 5.5
    with pytest.raises(InvalidToken):
        await process.authenticate(secret)


async def test_an_expired_key_is_refused_even_while_remembered(auth: Auth) -> None:
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "e" * 43
    await _key(auth, user, secret, expires_at=auth.clock.now() + timedelta(minutes=1))
    process = _Process(auth, InMemoryCredentialVersions())
    for _ in range(3):
        await process.authenticate(secret)
    reads = _reads()

    auth.clock.advance(timedelta(minutes=1))

    with pytest.raises(InvalidToken):
        await process.authenticate(secret)
    assert _reads() == reads  # refused on what was remembered, by the time alone


async def test_an_access_token_is_remembered_with_its_session_and_ends_with_it(
    auth: Auth,
) -> None:
    user, tokens = await auth.register()
    versions = InMemoryCredentialVersions()
    process, other = _Process(auth, versions), _Process(auth, versions)

    await process.authenticate(tokens.access_token)
    principal = await process.authenticate(tokens.access_token)
    assert _reads() == 1  # a token names its user: the first read is remembered
    assert (principal.user_id, principal.session_id) == (user.id, principal.session_id)

    handler = LogoutHandler(auth.uow(), clock=auth.clock, access=other.access)
    await handler.execute(Logout(refresh_token=tokens.refresh_token))

    with pytest.raises(InvalidToken):
        await process.authenticate(tokens.access_token)


async def test_a_session_that_runs_out_of_time_ends_while_remembered(auth: Auth) -> None:
    # an access token (15 minutes) outliving its session (10 minutes)
    handler = RegisterHandler(
        auth.uow(), hasher=auth.hasher, screen=auth.screen, issuer=auth.issuer,
        clock=auth.clock, ids=auth.ids, refresh_ttl=timedelta(minutes=10),
    )  # fmt: skip
    _, tokens = await handler.execute(Register(email="ada@example.com", password=PASSWORD))
    process = _Process(auth, InMemoryCredentialVersions())
    for _ in range(2):
        await process.authenticate(tokens.access_token)
    reads = _reads()

    auth.clock.advance(timedelta(minutes=10))

    with pytest.raises(InvalidToken):
        await process.authenticate(tokens.access_token)
    assert _reads() == reads


async def test_plan_and_profile_changes_reach_a_process_that_remembers_the_user(
    auth: Auth,
) -> None:
    user, tokens = await auth.register()
    versions = InMemoryCredentialVersions()
    process, admin = _Process(auth, versions), _Process(auth, versions)
    for _ in range(2):
        await process.authenticate(tokens.access_token)

    boss = await auth.create_user("boss@example.com", admin=True)
    handler = UpdateUserHandler(auth.uow(), auth.clock, access=admin.access)
    await handler.execute(UpdateUser(admin_id=boss.id, user_id=user.id, plan=Plan.PRO))
    assert (await process.authenticate(tokens.access_token)).user.plan is Plan.PRO

    profile = UpdateProfileHandler(auth.uow(), auth.clock, access=admin.access)
    await profile.execute(UpdateProfile(user_id=user.id, name="Ada L."))
    assert (await process.authenticate(tokens.access_token)).user.name == "Ada L."


async def test_a_principal_s_user_is_its_own_not_the_remembered_one(auth: Auth) -> None:
    user, tokens = await auth.register()
    process = _Process(auth, InMemoryCredentialVersions())
    first = await process.authenticate(tokens.access_token)
    first.user.name = "changed by a use case"
    second = await process.authenticate(tokens.access_token)
    second.user.name = "changed again"

    third = await process.authenticate(tokens.access_token)
    assert _reads() == 1
    assert third.user.name == user.name


class _Unreachable(InMemoryCredentialVersions):
    def current(self, user_id: uuid.UUID) -> asyncio.Future[bytes | None]:
        answer: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        answer.set_exception(ServiceUnavailable("redis: connection failed"))
        return answer


async def test_without_versions_every_request_reads_and_nothing_is_remembered(
    auth: Auth,
) -> None:
    _, tokens = await auth.register()
    process = _Process(auth, _Unreachable())
    for _ in range(3):
        await process.authenticate(tokens.access_token)
    assert (_reads(), len(process.principals)) == (3, 0)


@pytest.mark.parametrize("told", ["changed", "ended"])
async def test_access_changes_forget_locally_even_when_the_bump_fails(
    auth: Auth, caplog: pytest.LogCaptureFixture, told: str
) -> None:
    class _BumpFails(InMemoryCredentialVersions):
        async def bump(self, user_id: uuid.UUID) -> None:
            raise ServiceUnavailable("redis: connection failed")

    user, tokens = await auth.register()
    process = _Process(auth, _BumpFails())
    for _ in range(2):
        await process.authenticate(tokens.access_token)
    assert len(process.principals) == 1

    before = auth.clock.now()
    # logged, not raised: the change is committed
    await (process.access.ended if told == "ended" else process.access.changed)(user.id)

    assert len(process.principals) == 0
    assert "not bumped" in caplog.text
    assert process.ends.ended_since(user.id, before) is (told == "ended")  # an end is noted


def test_access_changes_need_a_clock_to_note_ends() -> None:
    with pytest.raises(ValueError, match="give the clock too"):
        AccessChanges(ends=CredentialEnds())


class _Flaky(InMemoryCredentialVersions):
    """Reachable until ``down`` is set."""

    down = False

    def current(self, user_id: uuid.UUID) -> asyncio.Future[bytes | None]:
        if not self.down:
            return super().current(user_id)
        return _Unreachable().current(user_id)

    async def bump(self, user_id: uuid.UUID) -> None:
        if self.down:
            raise ServiceUnavailable("redis: connection failed")
        await super().bump(user_id)


async def test_versions_out_of_reach_make_a_process_forget_all_it_remembers(auth: Auth) -> None:
    _, ada = await auth.register()
    _, bob = await auth.register("bob@example.com")
    versions = _Flaky()
    process = _Process(auth, versions)
    for tokens in (ada, bob, ada, bob):
        await process.authenticate(tokens.access_token)
    assert len(process.principals) == 2

    versions.down = True  # a change made now could not bump anything
    await process.authenticate(ada.access_token)
    versions.down = False

    assert len(process.principals) == 0  # bob's entry too
    reads = _reads()
    await process.authenticate(bob.access_token)
    assert _reads() == reads + 1


async def test_a_refused_access_token_is_forgotten(auth: Auth) -> None:
    user, tokens = await auth.register()
    process = _Process(auth, InMemoryCredentialVersions())
    for _ in range(2):
        await process.authenticate(tokens.access_token)
    await auth.change_user(user, disabled=True)
    await process.versions.bump(user.id)  # (as another process's change would)

    with pytest.raises(InvalidToken):
        await process.authenticate(tokens.access_token)
    assert len(process.principals) == 0


async def test_a_restriction_is_refused_with_nothing_saved_when_versions_are_out_of_reach(
    auth: Auth,
) -> None:
    user, _ = await auth.register()
    secret = API_KEY_PREFIX + "p" * 43
    key = await _key(auth, user, secret)
    versions = _Flaky()
    process = _Process(auth, versions)
    versions.down = True

    handler = RevokeApiKeyHandler(auth.uow(), auth.clock, access=process.access)
    with pytest.raises(ServiceUnavailable):
        await handler.execute(RevokeApiKey(user_id=user.id, key_id=key.id))

    async with auth.uow() as uow:
        assert (await uow.api_keys.get(key.id)).revoked_at is None
    versions.down = False
    await handler.execute(RevokeApiKey(user_id=user.id, key_id=key.id))
    async with auth.uow() as uow:
        assert (await uow.api_keys.get(key.id)).revoked_at is not None


def test_the_cache_keeps_the_most_recent_entries_within_its_size_and_age() -> None:
    now = [0.0]
    cache = PrincipalCache(max_age_s=2.0, size=2, monotonic=lambda: now[0])
    users = [User.create(id=uuid.uuid4(), email=f"u{i}@example.com", now=_T0) for i in range(3)]
    for i, user in enumerate(users):
        cache.put(i, KnownCredential(user=user, version=b"v1"))
        now[0] += 1.0
    assert (cache.get(0), len(cache)) == (None, 2)  # the oldest left for the size
    assert cache.get(1) is not None  # stored at 1.0, now 3.0: 2 s old, still good
    now[0] = 3.5
    assert cache.get(1) is None  # too old
    assert cache.get(2) is not None
    cache.forget_user(users[2].id)
    assert len(cache) == 0
    with pytest.raises(ValueError, match="at least 1"):
        PrincipalCache(size=0)


_T0 = Auth().clock.now()
