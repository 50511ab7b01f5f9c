"""Contract of RefreshTokenRepository, on the in-memory and the Postgres unit of work."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import timedelta

import pytest
from msgspec.structs import replace

from whalli.domain.model.errors import Conflict, NotFound, RefreshTokenReused, UserNotFound
from whalli.domain.model.tokens import RefreshToken
from whalli.domain.model.users import User

from ..conftest import UowFactory
from ..entities import NOW, a_user, at


def a_token(user: User, *, family_id: uuid.UUID | None = None, ttl_days: int = 30) -> RefreshToken:
    return RefreshToken.issue(
        id=uuid.uuid4(), user_id=user.id, family_id=family_id or uuid.uuid4(),
        secret=secrets.token_urlsafe(32), now=NOW, ttl=timedelta(days=ttl_days),
    )  # fmt: skip


def rotated(token: RefreshToken, seconds: float) -> RefreshToken:
    return token.rotate(new_id=uuid.uuid4(), new_secret=secrets.token_urlsafe(32), now=at(seconds))


async def stored(uow_factory: UowFactory, *tokens: RefreshToken, user: User) -> None:
    async with uow_factory() as uow:
        await uow.users.add(user)
        for token in tokens:
            await uow.refresh_tokens.add(token)
        await uow.commit()


async def found(uow_factory: UowFactory, token: RefreshToken) -> RefreshToken | None:
    async with uow_factory() as uow:
        return await uow.refresh_tokens.find_by_hash_for_update(token.token_hash)


async def test_a_token_reads_back_equal_by_its_hash(uow_factory: UowFactory) -> None:
    user = a_user()
    token = a_token(user)
    await stored(uow_factory, token, user=user)

    assert await found(uow_factory, token) == token


async def test_an_unknown_hash_finds_nothing(uow_factory: UowFactory) -> None:
    assert await found(uow_factory, a_token(a_user())) is None


async def test_a_token_needs_an_existing_user(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.refresh_tokens.add(a_token(a_user()))


async def test_a_taken_hash_is_a_conflict(uow_factory: UowFactory) -> None:
    user = a_user()
    token = a_token(user)
    twin = a_token(user)
    twin.token_hash = token.token_hash
    await stored(uow_factory, token, user=user)

    async with uow_factory() as uow:
        with pytest.raises(Conflict, match="conflicts with the current state"):
            await uow.refresh_tokens.add(twin)


async def test_rotation_persists_the_spent_token_and_its_successor(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    token = a_token(user)
    await stored(uow_factory, token, user=user)

    async with uow_factory() as uow:
        held = await uow.refresh_tokens.find_by_hash_for_update(token.token_hash)
        assert held is not None
        successor = rotated(held, 60)
        await uow.refresh_tokens.update(held)
        await uow.refresh_tokens.add(successor)
        await uow.commit()

    assert await found(uow_factory, token) == held
    assert held.used_at == at(60)
    assert await found(uow_factory, successor) == successor
    assert successor.parent_id == token.id


async def test_updating_an_unknown_token_is_not_found(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(NotFound, match="Refresh token not found"):
            await uow.refresh_tokens.update(a_token(a_user()))


async def test_revoke_family_revokes_the_family_once_and_nothing_else(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    family_id = uuid.uuid4()
    revoked_before, live = a_token(user, family_id=family_id), a_token(user, family_id=family_id)
    revoked_before.revoke(at(10))
    other = a_token(user)
    await stored(uow_factory, revoked_before, live, other, user=user)

    async with uow_factory() as uow:
        assert await uow.refresh_tokens.revoke_family(family_id, at(60)) == 1
        assert await uow.refresh_tokens.revoke_family(uuid.uuid4(), at(60)) == 0
        await uow.commit()

    assert await found(uow_factory, live) == replace(live, revoked_at=at(60))
    assert await found(uow_factory, revoked_before) == revoked_before
    assert await found(uow_factory, other) == other


async def test_revoke_all_for_user_revokes_every_family_of_that_user_only(
    uow_factory: UowFactory,
) -> None:
    user, someone_else = a_user(), a_user()
    mine = [a_token(user), a_token(user)]
    theirs = a_token(someone_else)
    await stored(uow_factory, *mine, user=user)
    await stored(uow_factory, theirs, user=someone_else)

    async with uow_factory() as uow:
        assert await uow.refresh_tokens.revoke_all_for_user(user.id, at(60)) == 2
        assert await uow.refresh_tokens.revoke_all_for_user(user.id, at(90)) == 0
        await uow.commit()

    for token in mine:
        assert await found(uow_factory, token) == replace(token, revoked_at=at(60))
    assert await found(uow_factory, theirs) == theirs


async def test_a_family_is_active_until_revoked_or_expired(uow_factory: UowFactory) -> None:
    user = a_user()
    token = a_token(user, ttl_days=1)
    spent_family = a_token(user)
    successor = rotated(spent_family, 60)
    await stored(uow_factory, token, spent_family, successor, user=user)

    async with uow_factory() as uow:
        tokens = uow.refresh_tokens
        assert await tokens.family_is_active(token.family_id, at(60))
        assert await tokens.family_is_active(spent_family.family_id, at(120))
        assert not await tokens.family_is_active(token.family_id, token.expires_at)
        assert not await tokens.family_is_active(uuid.uuid4(), at(60))
        await tokens.revoke_family(token.family_id, at(90))
        assert not await tokens.family_is_active(token.family_id, at(120))


async def test_a_session_began_when_its_first_token_was_issued(uow_factory: UowFactory) -> None:
    # rotations do not make a session younger: the sign-in is its first token's creation
    user = a_user()
    first = a_token(user)
    second = rotated(first, 600)
    third = rotated(second, 1200)
    other = a_token(user)
    await stored(uow_factory, first, second, third, other, user=user)

    async with uow_factory() as uow:
        assert await uow.refresh_tokens.signed_in_at(first.family_id) == NOW
        assert await uow.refresh_tokens.signed_in_at(uuid.uuid4()) is None


async def test_uncommitted_revocations_are_rolled_back(uow_factory: UowFactory) -> None:
    user = a_user()
    token = a_token(user)
    await stored(uow_factory, token, user=user)

    async with uow_factory() as uow:
        await uow.refresh_tokens.revoke_all_for_user(user.id, at(60))

    assert await found(uow_factory, token) == token


async def test_a_second_concurrent_refresh_waits_for_the_first_and_sees_the_token_spent(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    token = a_token(user)
    await stored(uow_factory, token, user=user)

    async with uow_factory() as first:
        held = await first.refresh_tokens.find_by_hash_for_update(token.token_hash)
        assert held is not None
        second = asyncio.create_task(found(uow_factory, token))
        for _ in range(20):  # give the second every chance to get past the lock if it could
            await asyncio.sleep(0.01)
            assert not second.done()
        successor = rotated(held, 60)
        await first.refresh_tokens.update(held)
        await first.refresh_tokens.add(successor)
        await first.commit()

    seen = await second
    assert seen == replace(token, used_at=at(60))
    with pytest.raises(RefreshTokenReused, match="invalid or has expired"):
        rotated(held if seen is None else seen, 61)


async def test_the_lock_is_released_when_the_unit_of_work_ends(uow_factory: UowFactory) -> None:
    user = a_user()
    token = a_token(user)
    await stored(uow_factory, token, user=user)

    async with uow_factory() as uow:
        assert await uow.refresh_tokens.find_by_hash_for_update(token.token_hash) == token
        assert await uow.refresh_tokens.find_by_hash_for_update(token.token_hash) == token

    assert await found(uow_factory, token) == token


async def test_a_tokens_owner_is_found_and_their_account_held_for_a_refresh(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    token = a_token(user)
    await stored(uow_factory, token, user=user)

    async with uow_factory() as uow:
        assert await uow.refresh_tokens.owner_of(token.token_hash) == user.id
        assert await uow.refresh_tokens.owner_of(a_token(user).token_hash) is None
        await uow.users.lock_sessions(user.id)
        with pytest.raises(UserNotFound):
            await uow.users.lock_sessions(uuid.uuid4())
