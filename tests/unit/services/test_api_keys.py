"""API key use cases on the in-memory unit of work: the secret once, own keys only."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.api_keys import ApiKey, hash_api_key
from whalli.domain.model.errors import ApiKeyNotFound, InvalidInput
from whalli.domain.model.users import User
from whalli.domain.services.api_keys.create_api_key import (
    CreateApiKey,
    CreateApiKeyHandler,
    CreatedApiKey,
)
from whalli.domain.services.api_keys.list_api_keys import ListApiKeys, ListApiKeysHandler
from whalli.domain.services.api_keys.revoke_api_key import RevokeApiKey, RevokeApiKeyHandler


class Keys:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.ids = SequentialIds()

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    async def user(self, name: str) -> User:
        user = User.create(id=self.ids.new_id(), email=f"{name}@example.com", now=self.clock.now())
        async with self.uow() as uow:
            await uow.users.add(user)
            await uow.commit()
        return user

    async def create(
        self, user: User, name: str = "laptop", expires_at: datetime | None = None
    ) -> CreatedApiKey:
        handler = CreateApiKeyHandler(self.uow(), self.clock, self.ids)
        command = CreateApiKey(user_id=user.id, name=name, expires_at=expires_at)
        return await handler.execute(command)

    async def list(self, user: User) -> list[ApiKey]:
        return await ListApiKeysHandler(self.uow()).execute(ListApiKeys(user_id=user.id))

    async def revoke(self, user: User, key_id: uuid.UUID) -> None:
        await RevokeApiKeyHandler(self.uow(), self.clock).execute(
            RevokeApiKey(user_id=user.id, key_id=key_id)
        )

    async def stored(self, key_id: uuid.UUID) -> ApiKey:
        async with self.uow() as uow:
            return await uow.api_keys.get(key_id)


@pytest.fixture
def keys() -> Keys:
    return Keys()


async def test_a_new_key_returns_its_secret_once_and_stores_only_its_hash(keys: Keys) -> None:
    ada = await keys.user("ada")
    created = await keys.create(ada, "  CI   runner ")

    assert created.secret.startswith("whk_")
    assert len(created.secret) >= len("whk_") + 43
    stored = await keys.stored(created.key.id)
    assert stored == created.key
    assert stored.name == "CI runner"
    assert stored.user_id == ada.id
    assert stored.key_hash == hash_api_key(created.secret)
    assert created.secret not in repr(stored)
    assert stored.display_prefix == created.secret[:10]


async def test_two_keys_never_share_a_secret(keys: Keys) -> None:
    ada = await keys.user("ada")
    first, second = await keys.create(ada), await keys.create(ada)
    assert first.secret != second.secret
    assert first.key.key_hash != second.key.key_hash


async def test_a_key_needs_a_name_and_a_future_expiry(keys: Keys) -> None:
    ada = await keys.user("ada")
    with pytest.raises(InvalidInput, match="1 to 100 characters"):
        await keys.create(ada, "   ")
    with pytest.raises(InvalidInput, match="expiry must be in the future"):
        await keys.create(ada, expires_at=keys.clock.now())
    assert await keys.list(ada) == []


async def test_a_key_may_expire(keys: Keys) -> None:
    ada = await keys.user("ada")
    created = await keys.create(ada, expires_at=keys.clock.now() + timedelta(days=1))
    assert created.key.is_active(keys.clock.now())
    assert not created.key.is_active(keys.clock.advance(timedelta(days=1)))


async def test_a_user_lists_only_their_own_keys_newest_first(keys: Keys) -> None:
    ada, bob = await keys.user("ada"), await keys.user("bob")
    first = await keys.create(ada, "first")
    keys.clock.advance(1)
    second = await keys.create(ada, "second")
    await keys.create(bob, "bob's")

    assert [k.id for k in await keys.list(ada)] == [second.key.id, first.key.id]
    assert [k.name for k in await keys.list(bob)] == ["bob's"]


async def test_revoking_a_key_keeps_it_listed_as_revoked(keys: Keys) -> None:
    ada = await keys.user("ada")
    created = await keys.create(ada)
    keys.clock.advance(60)

    await keys.revoke(ada, created.key.id)

    stored = await keys.stored(created.key.id)
    assert stored.revoked_at == keys.clock.now()
    assert not stored.is_active(keys.clock.now())
    assert [k.revoked_at for k in await keys.list(ada)] == [keys.clock.now()]


async def test_revoking_twice_keeps_the_first_revocation_time(keys: Keys) -> None:
    ada = await keys.user("ada")
    created = await keys.create(ada)
    await keys.revoke(ada, created.key.id)
    first = (await keys.stored(created.key.id)).revoked_at
    keys.clock.advance(60)

    await keys.revoke(ada, created.key.id)

    assert (await keys.stored(created.key.id)).revoked_at == first


async def test_another_users_key_cannot_be_told_from_a_missing_one(keys: Keys) -> None:
    ada, bob = await keys.user("ada"), await keys.user("bob")
    adas = await keys.create(ada)

    with pytest.raises(ApiKeyNotFound, match="API key not found") as on_real:
        await keys.revoke(bob, adas.key.id)
    with pytest.raises(ApiKeyNotFound, match="API key not found") as on_missing:
        await keys.revoke(bob, uuid.uuid4())

    assert (on_real.value.message, on_real.value.details) == (
        on_missing.value.message, on_missing.value.details,
    )  # fmt: skip
    assert (await keys.stored(adas.key.id)).revoked_at is None
