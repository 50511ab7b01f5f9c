"""Accounts with working API keys, seeded straight into a FakeContainer's store, for route tests."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.fakes import FakeContainer
from whalli.domain.model.api_keys import API_KEY_PREFIX, ApiKey
from whalli.domain.model.users import Plan, Role, User

PASSWORD = "a seeded password, long enough"


class Caller:
    """A user and the client calls they make, authenticated with their own API key (``call``)
    or signed in with their password (``call_signed_in``: what an API key may not do)."""

    def __init__(self, user: User, secret: str, client: AsyncTestClient[Litestar]) -> None:
        self.user = user
        self.id = str(user.id)
        self.email = user.email
        self.headers = {"X-API-Key": secret}
        self._client = client
        self._session: dict[str, str] | None = None

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        return await self._request(method, path, body, self.headers)

    async def call_signed_in(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            login = {"email": self.email, "password": PASSWORD}
            signed_in = await self._client.post("/api/auth/login", json=login)
            assert signed_in.status_code == 200, signed_in.text
            token = signed_in.json()["accessToken"]
            self._session = {"Authorization": f"Bearer {token}"}
        return await self._request(method, path, body, self._session)

    async def _request(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        return await self._client.request(method, path, **kwargs)


async def seed_api_key(
    container: FakeContainer, name: str, *, plan: Plan = Plan.FREE, role: Role = Role.USER
) -> tuple[User, str]:
    """A user ``<name>@example.com`` and the secret of an API key of theirs."""
    now = container.clock.now()
    user = User.create(
        id=container.ids.new_id(), email=f"{name}@example.com", name=name.title(), now=now,
        plan=plan, role=role, password_hash=container.hasher.hash(PASSWORD),
    )  # fmt: skip
    secret = API_KEY_PREFIX + container.ids.new_token(32)
    key = ApiKey.create(
        id=container.ids.new_id(), user_id=user.id, name="tests", secret=secret, now=now
    )
    async with container.uow() as uow:
        await uow.users.add(user)
        await uow.api_keys.add(key)
        await uow.commit()
    return user, secret


async def seed_caller(
    container: FakeContainer,
    client: AsyncTestClient[Litestar],
    name: str,
    *,
    plan: Plan = Plan.FREE,
    role: Role = Role.USER,
) -> Caller:
    user, secret = await seed_api_key(container, name, plan=plan, role=role)
    return Caller(user, secret, client)
