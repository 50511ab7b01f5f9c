"""Personal API keys: /api/keys (the caller's own; the secret is shown once, at creation)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from whalli.domain.model import api_keys as model
from whalli.domain.model.principal import Principal
from whalli.domain.services.api_keys.create_api_key import CreateApiKey, CreateApiKeyHandler
from whalli.domain.services.api_keys.list_api_keys import ListApiKeys, ListApiKeysHandler
from whalli.domain.services.api_keys.revoke_api_key import RevokeApiKey, RevokeApiKeyHandler
from whalli.entrypoints.http.schemas import Inbound, Schema
from whalli.entrypoints.http.security import SESSION_ONLY


class ApiKey(Schema):
    """A key as listed: never its secret or hash. Unset times are ``null``, not left out."""

    id: UUID
    name: str
    display_prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKey):
    """The new key and its secret: the only time the secret is shown."""

    secret: str


class ApiKeyCreate(Inbound):
    name: str
    expires_at: datetime | None = None


def _api_key(key: model.ApiKey) -> ApiKey:
    return ApiKey(
        id=key.id, name=key.name, display_prefix=key.display_prefix, created_at=key.created_at,
        expires_at=key.expires_at, revoked_at=key.revoked_at, last_used_at=key.last_used_at,
    )  # fmt: skip


def _created(key: model.ApiKey, secret: str) -> ApiKeyCreated:
    return ApiKeyCreated(
        id=key.id, name=key.name, display_prefix=key.display_prefix, created_at=key.created_at,
        expires_at=key.expires_at, revoked_at=key.revoked_at, last_used_at=key.last_used_at,
        secret=secret,
    )  # fmt: skip


class ApiKeyController(Controller):
    path = "/api/keys"
    tags = ["api keys"]
    # A new key's secret, and the list of the caller's keys, must not be stored by any cache
    # (as the token responses of /api/auth: RFC 6749 5.1, ASVS V8.2.1).
    cache_control = CacheControlHeader(no_store=True)

    @post(
        "/",
        opt=SESSION_ONLY,
        summary="Create an API key (not with an API key)",
        description="The response carries the secret; it is not stored and cannot be shown again.",
    )
    async def create(
        self,
        principal: NamedDependency[Principal],
        create_api_key: NamedDependency[CreateApiKeyHandler],
        data: JSONBody[ApiKeyCreate],
    ) -> ApiKeyCreated:
        command = CreateApiKey(
            user_id=principal.user_id, name=data.name, expires_at=data.expires_at,
            api_key_id=principal.api_key_id,
        )  # fmt: skip
        created = await create_api_key.execute(command)
        return _created(created.key, created.secret)

    @get("/", summary="The caller's API keys, newest first (revoked ones included)")
    async def index(
        self,
        principal: NamedDependency[Principal],
        list_api_keys: NamedDependency[ListApiKeysHandler],
    ) -> list[ApiKey]:
        keys = await list_api_keys.execute(ListApiKeys(user_id=principal.user_id))
        return [_api_key(key) for key in keys]

    @delete("/{key_id:uuid}", summary="Revoke one of the caller's API keys")
    async def revoke(
        self,
        principal: NamedDependency[Principal],
        revoke_api_key: NamedDependency[RevokeApiKeyHandler],
        key_id: FromPath[UUID],
    ) -> None:
        await revoke_api_key.execute(RevokeApiKey(user_id=principal.user_id, key_id=key_id))
