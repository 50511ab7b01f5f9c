"""Admin use cases on the in-memory unit of work: admins only, disabling ends access, last admin."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.api_keys import ApiKey
from whalli.domain.model.errors import (
    ApiKeyNotAllowed,
    InvalidInput,
    LastAdmin,
    PermissionDenied,
    UserNotFound,
)
from whalli.domain.model.tokens import RefreshToken
from whalli.domain.model.users import Plan, Role, User
from whalli.domain.services.admin.list_users import ListUsers, ListUsersHandler, UserPage
from whalli.domain.services.admin.summarize_feedback import (
    FeedbackSummary,
    SummarizeFeedback,
    SummarizeFeedbackHandler,
)
from whalli.domain.services.admin.update_user import UpdateUser, UpdateUserHandler

ADMIN, USER = Role.ADMIN, Role.USER


class Admin:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.ids = SequentialIds()

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    async def user(self, name: str, role: Role = USER, *, disabled: bool = False) -> User:
        user = User.create(
            id=self.ids.new_id(), email=f"{name}@example.com", name=name.title(),
            now=self.clock.now(), role=role,
        )  # fmt: skip
        user.disabled = disabled
        async with self.uow() as uow:
            await uow.users.add(user)
            await uow.commit()
        self.clock.advance(1)
        return user

    async def list(
        self, admin: User, query: str = "", limit: int = 50, offset: int = 0,
        api_key_id: uuid.UUID | None = None,
    ) -> UserPage:  # fmt: skip
        command = ListUsers(
            admin_id=admin.id, query=query, limit=limit, offset=offset, api_key_id=api_key_id
        )
        return await ListUsersHandler(self.uow()).execute(command)

    async def update(self, admin: User, user: User, **changes: object) -> User:
        command = UpdateUser(admin_id=admin.id, user_id=user.id, **changes)  # type: ignore[arg-type]
        return await UpdateUserHandler(self.uow(), self.clock).execute(command)

    async def feedback(self, admin: User, api_key_id: uuid.UUID | None = None) -> FeedbackSummary:
        command = SummarizeFeedback(admin_id=admin.id, api_key_id=api_key_id)
        return await SummarizeFeedbackHandler(self.uow(), self.clock).execute(command)

    async def stored(self, user: User) -> User:
        async with self.uow() as uow:
            return await uow.users.get(user.id)

    async def session_and_key(self, user: User) -> tuple[RefreshToken, ApiKey]:
        now = self.clock.now()
        token = RefreshToken.issue(
            id=self.ids.new_id(), user_id=user.id, family_id=self.ids.new_id(),
            secret=self.ids.new_token(32), now=now,
        )  # fmt: skip
        key = ApiKey.create(
            id=self.ids.new_id(), user_id=user.id, name="cli",
            secret="whk_" + self.ids.new_token(32), now=now,
        )  # fmt: skip
        async with self.uow() as uow:
            await uow.refresh_tokens.add(token)
            await uow.api_keys.add(key)
            await uow.commit()
        return token, key

    async def access(self, token: RefreshToken, key: ApiKey) -> tuple[bool, bool]:
        """Whether the session and the key still work."""
        now = self.clock.now()
        async with self.uow() as uow:
            session = await uow.refresh_tokens.family_is_active(token.family_id, now)
            stored_key = await uow.api_keys.get(key.id)
        return session, stored_key.is_active(now)


@pytest.fixture
def admin() -> Admin:
    return Admin()


# --- listing ----------------------------------------------------------------------------------
async def test_an_admin_pages_through_matching_users_oldest_first(admin: Admin) -> None:
    root = await admin.user("root", ADMIN)
    alices = [await admin.user(f"alice{n}") for n in range(5)]
    await admin.user("bob")

    first = await admin.list(root, "ALICE", limit=2)
    rest = await admin.list(root, " alice ", limit=2, offset=2)
    last = await admin.list(root, "alice", limit=2, offset=4)

    assert [u.id for u in first.items + rest.items + last.items] == [u.id for u in alices]
    assert (first.total, first.limit, first.offset) == (5, 2, 0)
    assert (last.total, last.limit, last.offset) == (5, 2, 4)
    assert (await admin.list(root)).total == 7


async def test_an_empty_page_past_the_end_still_counts_the_matches(admin: Admin) -> None:
    root = await admin.user("root", ADMIN)
    page = await admin.list(root, offset=10)
    assert (page.items, page.total) == ([], 1)


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (101, 0), (10, -1)])
async def test_a_page_is_1_to_100_users_from_a_non_negative_offset(
    admin: Admin, limit: int, offset: int
) -> None:
    root = await admin.user("root", ADMIN)
    with pytest.raises(InvalidInput, match=r"limit must be 1 to 100|offset cannot be negative"):
        await admin.list(root, limit=limit, offset=offset)


async def test_a_page_of_100_users_is_allowed(admin: Admin) -> None:
    root = await admin.user("root", ADMIN)
    assert (await admin.list(root, limit=100)).limit == 100


@pytest.mark.parametrize("who", ["user", "disabled admin", "unknown"])
async def test_only_active_admins_may_list_or_change_users(admin: Admin, who: str) -> None:
    bob = await admin.user("bob")
    caller = {
        "user": await admin.user("eve"),
        "disabled admin": await admin.user("old", ADMIN, disabled=True),
        "unknown": User.create(id=uuid.uuid4(), email="ghost@example.com", now=admin.clock.now()),
    }[who]

    with pytest.raises(PermissionDenied, match="Only admins"):
        await admin.list(caller)
    with pytest.raises(PermissionDenied, match="Only admins"):
        await admin.update(caller, bob, plan=Plan.PRO)
    with pytest.raises(PermissionDenied, match="Only admins"):
        await admin.update(caller, caller, role=ADMIN)
    assert await admin.stored(bob) == bob


async def test_an_admins_api_key_may_not_list_change_or_summarize(admin: Admin) -> None:
    root, bob = await admin.user("root", ADMIN), await admin.user("bob")
    _, key = await admin.session_and_key(root)

    with pytest.raises(ApiKeyNotAllowed, match="API key cannot use admin routes"):
        await admin.list(root, api_key_id=key.id)
    for change in ({"plan": Plan.PRO}, {"role": ADMIN}, {"disabled": True}):
        with pytest.raises(ApiKeyNotAllowed, match="API key cannot use admin routes"):
            await admin.update(root, bob, api_key_id=key.id, **change)
    with pytest.raises(ApiKeyNotAllowed, match="API key cannot use admin routes"):
        await admin.feedback(root, api_key_id=key.id)
    assert await admin.stored(bob) == bob


async def test_the_same_admin_signed_in_lists_changes_and_summarizes(admin: Admin) -> None:
    root, bob = await admin.user("root", ADMIN), await admin.user("bob")

    assert (await admin.list(root)).total == 2
    assert (await admin.update(root, bob, plan=Plan.PRO)).plan is Plan.PRO
    assert (await admin.feedback(root)).by_model == []


async def test_a_non_admins_api_key_is_told_admins_only(admin: Admin) -> None:
    eve = await admin.user("eve")
    with pytest.raises(PermissionDenied, match="Only admins") as refused:
        await admin.list(eve, api_key_id=uuid.uuid4())
    assert not isinstance(refused.value, ApiKeyNotAllowed)


# --- changing users ---------------------------------------------------------------------------
async def test_an_admin_changes_a_users_plan_and_role(admin: Admin) -> None:
    root, bob = await admin.user("root", ADMIN), await admin.user("bob")
    admin.clock.advance(60)

    updated = await admin.update(root, bob, plan=Plan.PRO, role=ADMIN)

    assert (updated.plan, updated.role, updated.disabled) == (Plan.PRO, ADMIN, False)
    assert updated.updated_at == admin.clock.now()
    assert await admin.stored(bob) == updated


async def test_a_change_that_changes_nothing_is_not_written(admin: Admin) -> None:
    root, bob = await admin.user("root", ADMIN), await admin.user("bob")
    admin.clock.advance(60)
    assert await admin.update(root, bob, plan=Plan.FREE, disabled=False) == bob
    assert await admin.stored(bob) == bob


async def test_changing_an_unknown_user_fails(admin: Admin) -> None:
    root = await admin.user("root", ADMIN)
    ghost = User.create(id=uuid.uuid4(), email="ghost@example.com", now=admin.clock.now())
    with pytest.raises(UserNotFound, match="User not found"):
        await admin.update(root, ghost, plan=Plan.PRO)


async def test_disabling_a_user_revokes_their_sessions_and_api_keys(admin: Admin) -> None:
    root, bob, cid = await admin.user("root", ADMIN), await admin.user("bob"), await admin.user("c")
    bobs, cids = await admin.session_and_key(bob), await admin.session_and_key(cid)

    updated = await admin.update(root, bob, disabled=True)

    assert updated.disabled
    assert (await admin.stored(bob)).disabled
    assert await admin.access(*bobs) == (False, False)
    assert await admin.access(*cids) == (True, True)


async def test_enabling_a_user_again_does_not_bring_back_their_sessions(admin: Admin) -> None:
    root, bob = await admin.user("root", ADMIN), await admin.user("bob")
    bobs = await admin.session_and_key(bob)
    await admin.update(root, bob, disabled=True)

    await admin.update(root, bob, disabled=False)

    assert not (await admin.stored(bob)).disabled
    assert await admin.access(*bobs) == (False, False)


async def test_a_failed_disable_revokes_nothing(admin: Admin) -> None:
    root = await admin.user("root", ADMIN)
    roots = await admin.session_and_key(root)

    with pytest.raises(LastAdmin, match="last active admin"):
        await admin.update(root, root, disabled=True)

    assert not (await admin.stored(root)).disabled
    assert await admin.access(*roots) == (True, True)


@pytest.mark.parametrize("change", [{"role": USER}, {"disabled": True}], ids=["demote", "disable"])
async def test_the_last_active_admin_cannot_demote_or_disable_themself(
    admin: Admin, change: dict[str, object]
) -> None:
    root = await admin.user("root", ADMIN)
    await admin.user("retired", ADMIN, disabled=True)  # a disabled admin does not count

    with pytest.raises(LastAdmin, match="last active admin"):
        await admin.update(root, root, **change)

    assert await admin.stored(root) == root


@pytest.mark.parametrize("change", [{"role": USER}, {"disabled": True}], ids=["demote", "disable"])
async def test_an_admin_may_step_down_while_another_admin_remains(
    admin: Admin, change: dict[str, object]
) -> None:
    root, other = await admin.user("root", ADMIN), await admin.user("other", ADMIN)

    updated = await admin.update(root, root, **change)

    assert not updated.is_admin
    assert (await admin.stored(other)).is_admin
    with pytest.raises(PermissionDenied, match="Only admins"):
        await admin.list(root)


async def test_demoting_an_admin_takes_effect_on_their_next_request(admin: Admin) -> None:
    root, other = await admin.user("root", ADMIN), await admin.user("other", ADMIN)
    assert (await admin.list(other)).total == 2
    admin.clock.advance(timedelta(minutes=1))

    await admin.update(root, other, role=USER)

    with pytest.raises(PermissionDenied, match="Only admins"):
        await admin.list(other)
