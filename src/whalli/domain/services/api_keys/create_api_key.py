"""Use case: create a personal API key."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec

from whalli.domain.model.api_keys import API_KEY_PREFIX, ApiKey
from whalli.domain.model.base import Value
from whalli.domain.model.errors import ApiKeyNotAllowed
from whalli.ports.clock import Clock
from whalli.ports.ids import IdGenerator
from whalli.ports.unit_of_work import UnitOfWork

API_KEY_SECRET_BYTES = 32  # 256 random bits


class CreateApiKey(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID
    name: str
    expires_at: datetime | None = None
    api_key_id: UUID | None = None  # set when the caller authenticated with an API key


class CreatedApiKey(Value, frozen=True, kw_only=True):
    """The stored key and its secret; the secret exists only here and is never stored."""

    key: ApiKey
    secret: str


class CreateApiKeyHandler:
    """Create an API key for the caller and return its secret, once.

    Rules:
    - the secret is ``whk_`` followed by 256 random bits; only its SHA-256 is stored, so it cannot
      be shown again (a lost key is revoked and replaced);
    - the name is trimmed, 1 to 100 characters; an expiry, if given, lies in the future
      (``InvalidInput``);
    - the key belongs to the caller and acts as them, with their current role and plan;
    - only a signed-in session creates keys: an API key cannot (``ApiKeyNotAllowed``, 403), so
      a leaked key cannot mint others that outlive its revocation.
    """

    def __init__(self, uow: UnitOfWork, clock: Clock, ids: IdGenerator) -> None:
        self._uow = uow
        self._clock = clock
        self._ids = ids

    async def execute(self, command: CreateApiKey) -> CreatedApiKey:
        if command.api_key_id is not None:
            raise ApiKeyNotAllowed("An API key cannot create API keys; sign in to do it.")
        secret = API_KEY_PREFIX + self._ids.new_token(API_KEY_SECRET_BYTES)
        key = ApiKey.create(
            id=self._ids.new_id(),
            user_id=command.user_id,
            name=command.name,
            secret=secret,
            now=self._clock.now(),
            expires_at=command.expires_at,
        )
        async with self._uow as uow:
            await uow.api_keys.add(key)
            await uow.commit()
        return CreatedApiKey(key=key, secret=secret)
