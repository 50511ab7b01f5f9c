"""Account administration: /api/admin (active admins signed in with a session; everyone else,
and any API key, gets 403)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypeVar
from uuid import UUID

import msgspec
import structlog
from litestar import Controller, get, patch
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from whalli.domain.model import users as model
from whalli.domain.model.principal import Principal
from whalli.domain.services.admin.list_users import (
    DEFAULT_PAGE_SIZE,
    ListUsers,
    ListUsersHandler,
)
from whalli.domain.services.admin.update_user import UpdateUser, UpdateUserHandler
from whalli.entrypoints.http.schemas import Inbound, Schema
from whalli.entrypoints.http.security import SESSION_ONLY

log = structlog.get_logger(__name__)


class User(Schema):
    id: UUID
    email: str
    name: str
    role: model.Role
    plan: model.Plan
    disabled: bool
    email_verified: bool
    created_at: datetime
    updated_at: datetime


class UserPage(Schema):
    items: list[User]
    total: int
    limit: int
    offset: int


class UserUpdate(Inbound, omit_defaults=True):
    role: model.Role | msgspec.UnsetType = msgspec.UNSET
    plan: model.Plan | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


def _user(user: model.User) -> User:
    return User(
        id=user.id, email=user.email, name=user.name, role=user.role, plan=user.plan,
        disabled=user.disabled, email_verified=user.email_verified,
        created_at=user.created_at, updated_at=user.updated_at,
    )  # fmt: skip


T = TypeVar("T")


def _given(value: T | msgspec.UnsetType) -> T | None:
    return None if isinstance(value, msgspec.UnsetType) else value


class AdminController(Controller):
    path = "/api/admin"
    tags = ["admin"]
    # Accounts' emails and names must not be stored by any cache (as /api/auth's account data).
    cache_control = CacheControlHeader(no_store=True)

    @get(
        "/users",
        opt=SESSION_ONLY,
        summary="Find accounts by email or name, oldest first (paginated; not with an API key)",
    )
    async def list_users(
        self,
        principal: NamedDependency[Principal],
        list_users: NamedDependency[ListUsersHandler],
        q: Annotated[str, QueryParameter(description="Part of the email or name")] = "",
        limit: Annotated[int, QueryParameter(description="1 to 100")] = DEFAULT_PAGE_SIZE,
        offset: Annotated[int, QueryParameter()] = 0,
    ) -> UserPage:
        command = ListUsers(
            admin_id=principal.user_id, query=q, limit=limit, offset=offset,
            api_key_id=principal.api_key_id,
        )  # fmt: skip
        page = await list_users.execute(command)
        return UserPage(
            items=[_user(u) for u in page.items],
            total=page.total,
            limit=page.limit,
            offset=page.offset,
        )

    @patch(
        "/users/{user_id:uuid}",
        opt=SESSION_ONLY,
        summary="Change an account's role, plan or disabled flag (not with an API key)",
        description=(
            "Disabling an account ends its sessions, revokes its API keys and the shared links "
            "it made (for good) and stops the replies it is generating."
        ),
    )
    async def update_user(
        self,
        principal: NamedDependency[Principal],
        update_user: NamedDependency[UpdateUserHandler],
        user_id: FromPath[UUID],
        data: JSONBody[UserUpdate],
    ) -> User:
        command = UpdateUser(
            admin_id=principal.user_id,
            user_id=user_id,
            role=_given(data.role),
            plan=_given(data.plan),
            disabled=_given(data.disabled),
            api_key_id=principal.api_key_id,
        )
        user = await update_user.execute(command)
        # the audit trail of admin actions: who changed whom, what was asked and what the
        # account now is (ids only: no email, no name)
        log.info(
            "admin_user_updated", admin_id=str(principal.user_id), user_id=str(user.id),
            requested=msgspec.to_builtins(data), role=user.role.value,
            plan=user.plan.value, disabled=user.disabled,
        )  # fmt: skip
        return _user(user)
