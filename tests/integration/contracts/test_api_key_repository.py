"""Contract of ApiKeyRepository, on the in-memory and the Postgres unit of work."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

import pytest

from whalli.domain.model.api_keys import API_KEY_PREFIX, ApiKey
from whalli.domain.model.errors import ApiKeyNotFound, Conflict, UserNotFound
from whalli.domain.model.users import Plan, Role, User

from ..conftest import UowFactory
from ..entities import NOW, a_user, at


def a_key(user: User, *, now: datetime = NOW, expires_at: datetime | None = None) -> ApiKey:
    return ApiKey.create(
        id=uuid.uuid4(), user_id=user.id, name="CI deploys",
        secret=API_KEY_PREFIX + secrets.token_urlsafe(32), now=now, expires_at=expires_at,
    )  # fmt: skip


async def stored(uow_factory: UowFactory, *keys: ApiKey, user: User) -> None:
    async with uow_factory() as uow:
        await uow.users.add(user)
        for key in keys:
            await uow.api_keys.add(key)
        await uow.commit()


async def test_a_key_reads_back_equal_by_id_and_by_hash(uow_factory: UowFactory) -> None:
    user = a_user()
    key, expiring = a_key(user), a_key(user, expires_at=at(3600))
    await stored(uow_factory, key, expiring, user=user)

    async with uow_factory() as uow:
        assert await uow.api_keys.get(key.id) == key
        assert await uow.api_keys.find_by_hash(key.key_hash) == key
        assert await uow.api_keys.get(expiring.id) == expiring


async def test_an_unknown_key_is_not_found(uow_factory: UowFactory) -> None:
    key = a_key(a_user())
    async with uow_factory() as uow:
        with pytest.raises(ApiKeyNotFound, match="API key not found"):
            await uow.api_keys.get(key.id)
        with pytest.raises(ApiKeyNotFound, match="API key not found"):
            await uow.api_keys.update(key)
        assert await uow.api_keys.find_by_hash(key.key_hash) is None


async def test_a_key_needs_an_existing_user(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.api_keys.add(a_key(a_user()))


async def test_a_taken_hash_is_a_conflict(uow_factory: UowFactory) -> None:
    user = a_user()
    key, twin = a_key(user), a_key(user)
    twin.key_hash = key.key_hash
    await stored(uow_factory, key, user=user)

    async with uow_factory() as uow:
        with pytest.raises(Conflict, match="conflicts with the current state"):
            await uow.api_keys.add(twin)


async def test_update_persists_use_and_revocation(uow_factory: UowFactory) -> None:
    user = a_user()
    key = a_key(user)
    await stored(uow_factory, key, user=user)

    key.last_used_at, key.name = at(30), "Renamed"
    key.revoke(at(60))
    async with uow_factory() as uow:
        await uow.api_keys.update(key)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.api_keys.get(key.id) == key


async def test_list_for_user_is_newest_first_with_revoked_keys(uow_factory: UowFactory) -> None:
    user, someone_else = a_user(), a_user()
    older, newer = a_key(user, now=at(10)), a_key(user, now=at(20))
    older.revoke(at(30))
    await stored(uow_factory, older, newer, user=user)
    await stored(uow_factory, a_key(someone_else), user=someone_else)

    async with uow_factory() as uow:
        assert await uow.api_keys.list_for_user(user.id) == [newer, older]
        assert await uow.api_keys.list_for_user(uuid.uuid4()) == []


async def test_revoke_all_for_user_revokes_active_keys_of_that_user_only(
    uow_factory: UowFactory,
) -> None:
    user, someone_else = a_user(), a_user()
    revoked_before, active = a_key(user), a_key(user)
    revoked_before.revoke(at(10))
    theirs = a_key(someone_else)
    await stored(uow_factory, revoked_before, active, user=user)
    await stored(uow_factory, theirs, user=someone_else)

    async with uow_factory() as uow:
        assert await uow.api_keys.revoke_all_for_user(user.id, at(60)) == 1
        await uow.commit()

    async with uow_factory() as uow:
        assert (await uow.api_keys.get(active.id)).revoked_at == at(60)
        assert (await uow.api_keys.get(revoked_before.id)).revoked_at == at(10)
        assert await uow.api_keys.get(theirs.id) == theirs


async def test_find_by_hash_with_user_reads_the_key_and_its_user_as_they_are(
    uow_factory: UowFactory,
) -> None:
    user, disabled = a_user(role=Role.ADMIN, plan=Plan.PRO), a_user(disabled=True)
    key, revoked, expiring = a_key(user), a_key(user), a_key(user, expires_at=at(60))
    revoked.revoke(at(30))
    theirs = a_key(disabled)
    await stored(uow_factory, key, revoked, expiring, user=user)
    await stored(uow_factory, theirs, user=disabled)

    async with uow_factory() as uow:
        keys = uow.api_keys
        assert await keys.find_by_hash_with_user(key.key_hash) == (key, user)
        assert await keys.find_by_hash_with_user(revoked.key_hash) == (revoked, user)
        assert await keys.find_by_hash_with_user(expiring.key_hash) == (expiring, user)
        assert await keys.find_by_hash_with_user(theirs.key_hash) == (theirs, disabled)
        assert await keys.find_by_hash_with_user(a_key(user).key_hash) is None


async def test_get_with_user_reads_the_key_by_id_and_its_user_as_they_are(
    uow_factory: UowFactory,
) -> None:
    user, disabled = a_user(role=Role.ADMIN, plan=Plan.PRO), a_user(disabled=True)
    key, revoked, expiring = a_key(user), a_key(user), a_key(user, expires_at=at(60))
    revoked.revoke(at(30))
    theirs = a_key(disabled)
    await stored(uow_factory, key, revoked, expiring, user=user)
    await stored(uow_factory, theirs, user=disabled)

    async with uow_factory().read_only() as uow:
        keys = uow.api_keys
        assert await keys.get_with_user(key.id) == (key, user)
        assert await keys.get_with_user(revoked.id) == (revoked, user)
        assert await keys.get_with_user(expiring.id) == (expiring, user)
        assert await keys.get_with_user(theirs.id) == (theirs, disabled)
        assert await keys.get_with_user(uuid.uuid4()) is None


async def test_find_by_hash_with_user_works_in_a_read_only_unit_of_work(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    key = a_key(user)
    await stored(uow_factory, key, user=user)

    async with uow_factory().read_only() as uow:
        assert await uow.api_keys.find_by_hash_with_user(key.key_hash) == (key, user)


async def test_record_use_writes_only_a_missing_or_stale_last_use(uow_factory: UowFactory) -> None:
    user = a_user()
    key = a_key(user)
    await stored(uow_factory, key, user=user)

    async with uow_factory() as uow:
        assert await uow.api_keys.record_use(key.id, at(100), stale_before=at(40)) is True
        await uow.commit()
    async with uow_factory() as uow:
        assert (await uow.api_keys.get(key.id)).last_used_at == at(100)
        # recorded at 100, not before 100: recent enough, nothing written
        assert await uow.api_keys.record_use(key.id, at(130), stale_before=at(100)) is False
        assert (await uow.api_keys.get(key.id)).last_used_at == at(100)
        assert await uow.api_keys.record_use(key.id, at(170), stale_before=at(110)) is True
        await uow.commit()
    async with uow_factory() as uow:
        assert (await uow.api_keys.get(key.id)).last_used_at == at(170)
        assert await uow.api_keys.record_use(uuid.uuid4(), at(200), stale_before=at(200)) is False


async def test_record_use_keeps_the_rest_of_the_row_as_stored(uow_factory: UowFactory) -> None:
    user = a_user()
    key = a_key(user)
    await stored(uow_factory, key, user=user)
    async with uow_factory() as uow:  # revoked after the caller read the key
        assert await uow.api_keys.revoke_all_for_user(user.id, at(50)) == 1
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.api_keys.record_use(key.id, at(60), stale_before=at(60)) is True
        await uow.commit()

    async with uow_factory() as uow:
        after = await uow.api_keys.get(key.id)
    assert (after.revoked_at, after.last_used_at, after.name) == (at(50), at(60), key.name)


async def test_revoking_a_key_writes_its_first_revocation_time_only(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    key = a_key(user)
    await stored(uow_factory, key, user=user)

    async with uow_factory() as uow:
        assert await uow.api_keys.record_use(key.id, at(5), stale_before=at(5))
        assert await uow.api_keys.revoke(key.id, at(10))
        assert not await uow.api_keys.revoke(key.id, at(20))  # revoked already
        assert not await uow.api_keys.revoke(uuid.uuid4(), at(20))
        await uow.commit()

    async with uow_factory() as uow:
        found = await uow.api_keys.get(key.id)
    assert (found.revoked_at, found.last_used_at) == (at(10), at(5))
