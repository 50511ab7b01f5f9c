"""Use case: the caller's API keys."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.api_keys import ApiKey
from whalli.ports.unit_of_work import UnitOfWork


class ListApiKeys(msgspec.Struct, frozen=True, kw_only=True):
    user_id: UUID


class ListApiKeysHandler:
    """List the caller's own API keys, newest first, revoked and expired ones included.

    Rules:
    - only the caller's keys; nobody, admins included, lists another user's keys here;
    - keys carry their hash and display prefix, never the secret (the entrypoint shows neither
      the hash nor anything but the prefix).
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListApiKeys) -> list[ApiKey]:
        async with self._uow as uow:
            return await uow.api_keys.list_for_user(command.user_id)
