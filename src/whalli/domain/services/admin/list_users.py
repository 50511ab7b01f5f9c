"""Use case: find accounts (admins only)."""

from __future__ import annotations

from uuid import UUID

import msgspec

from whalli.domain.model.base import Value
from whalli.domain.model.errors import InvalidInput
from whalli.domain.model.users import User
from whalli.domain.services.admin.access import require_admin
from whalli.ports.unit_of_work import UnitOfWork

MAX_PAGE_SIZE = 100
MAX_OFFSET = 2**63 - 1 - MAX_PAGE_SIZE  # (Postgres bigint; beyond, no page can be read)
DEFAULT_PAGE_SIZE = 50


class ListUsers(msgspec.Struct, frozen=True, kw_only=True):
    admin_id: UUID
    query: str = ""
    limit: int = DEFAULT_PAGE_SIZE
    offset: int = 0
    api_key_id: UUID | None = None  # set when the caller authenticated with an API key


class UserPage(Value, frozen=True, kw_only=True):
    items: list[User]
    total: int
    limit: int
    offset: int


class ListUsersHandler:
    """One page of the accounts whose email or name contains ``query``, oldest first.

    Rules:
    - active admins only (``PermissionDenied``), signed in with a session: an API key gets
      ``ApiKeyNotAllowed`` (403), so a leaked key grants no admin power;
    - ``limit`` is 1 to 100, ``offset`` 0 to ``MAX_OFFSET`` and the query holds no NUL (which
      Postgres text cannot hold) (``InvalidInput``, naming the parameter);
    - ``total`` counts every match, so that a client can page through all of them;
    - the query is trimmed; an empty query matches everyone.
    """

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def execute(self, command: ListUsers) -> UserPage:
        if not 1 <= command.limit <= MAX_PAGE_SIZE:
            raise InvalidInput(f"limit must be 1 to {MAX_PAGE_SIZE}.", field="limit")
        if command.offset < 0:
            raise InvalidInput("offset cannot be negative.", field="offset")
        if command.offset > MAX_OFFSET:
            raise InvalidInput(f"offset must be at most {MAX_OFFSET}.", field="offset")
        if "\x00" in command.query:
            raise InvalidInput("q cannot contain a NUL character.", field="q")
        query = command.query.strip()
        async with self._uow as uow:
            await require_admin(uow, command.admin_id, api_key_id=command.api_key_id)
            items = await uow.users.search(query, limit=command.limit, offset=command.offset)
            total = await uow.users.count(query)
        return UserPage(items=items, total=total, limit=command.limit, offset=command.offset)
