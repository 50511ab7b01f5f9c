"""Contract of UserRepository, on the in-memory and the Postgres unit of work."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings

from whalli.domain.model.api_keys import ApiKey
from whalli.domain.model.errors import (
    Conflict,
    EmailAlreadyRegistered,
    InvalidInput,
    UserNotFound,
)
from whalli.domain.model.tokens import RefreshToken
from whalli.domain.model.users import Plan, Role, User, normalize_email

from ..conftest import UowFactory
from ..entities import a_refresh_token, a_user, at
from .strategies import users

examples = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@examples
@given(user=users())
async def test_any_valid_user_reads_back_equal(uow_factory: UowFactory, user: User) -> None:
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.users.get(user.id) == user
        assert await uow.users.find_by_email(user.email) == user


async def test_an_account_stored_under_its_domains_ascii_spelling_is_found_by_its_address(
    uow_factory: UowFactory,
) -> None:
    """An account registered before domains were decoded holds its A-label spelling; a
    sign-in, which looks the address up normalized (Unicode), still finds it."""
    local = f"idn-{uuid.uuid4().hex}"
    legacy = a_user(email=f"{local}@xn--bcher-kva.example")
    async with uow_factory() as uow:
        await uow.users.add(legacy)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.find_by_email(normalize_email(legacy.email)) == legacy
        assert await uow.users.find_by_email(f"{local}@b\u00fccher.org") is None


async def test_of_two_spellings_of_one_address_the_normalized_one_is_found(
    uow_factory: UowFactory,
) -> None:
    local = f"idn-{uuid.uuid4().hex}"
    legacy = a_user(email=f"{local}@xn--bcher-kva.example")
    current = a_user(email=f"{local}@b\u00fccher.example")
    async with uow_factory() as uow:
        await uow.users.add(legacy)
        await uow.users.add(current)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.find_by_email(current.email) == current


async def test_a_taken_email_is_refused_and_the_work_can_go_on(uow_factory: UowFactory) -> None:
    first, other = a_user(), a_user()
    twin = a_user(email=first.email)
    async with uow_factory() as uow:
        await uow.users.add(first)
        with pytest.raises(EmailAlreadyRegistered, match="already exists"):
            await uow.users.add(twin)
        await uow.users.add(other)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.users.get(other.id) == other
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.users.get(twin.id)


async def test_a_taken_email_is_refused_across_units_of_work(uow_factory: UowFactory) -> None:
    first = a_user()
    async with uow_factory() as uow:
        await uow.users.add(first)
        await uow.commit()

    async with uow_factory() as uow:
        with pytest.raises(EmailAlreadyRegistered, match="already exists"):
            await uow.users.add(a_user(email=first.email))


async def test_a_reused_id_is_a_conflict(uow_factory: UowFactory) -> None:
    first = a_user()
    async with uow_factory() as uow:
        await uow.users.add(first)
        with pytest.raises(Conflict, match="id is already taken"):
            await uow.users.add(a_user(id=first.id))


async def test_an_unknown_user_is_not_found(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.users.get(a_user().id)
        assert await uow.users.find_by_email(a_user().email) is None


async def test_update_persists_every_changed_field(uow_factory: UowFactory) -> None:
    user = a_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    user.name, user.plan, user.disabled, user.email_verified = "Grace", Plan.PRO, True, True
    user.email = f"new-{user.email}"
    async with uow_factory() as uow:
        await uow.users.update(user)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.users.get(user.id) == user


async def test_updating_an_unknown_user_is_not_found(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.users.update(a_user())


async def test_updating_to_a_taken_email_is_refused(uow_factory: UowFactory) -> None:
    first, second = a_user(), a_user()
    async with uow_factory() as uow:
        await uow.users.add(first)
        await uow.users.add(second)
        await uow.commit()

    second.email = first.email
    async with uow_factory() as uow:
        with pytest.raises(EmailAlreadyRegistered, match="already exists"):
            await uow.users.update(second)


async def test_count_admins_counts_enabled_admins_only(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        before = await uow.users.count_admins()
        await uow.users.add(a_user(role=Role.ADMIN))
        await uow.users.add(a_user(role=Role.ADMIN, disabled=True))
        await uow.users.add(a_user())

        assert await uow.users.count_admins() == before + 1


async def test_search_matches_email_or_name_case_insensitively_oldest_first(
    uow_factory: UowFactory,
) -> None:
    marker = uuid.uuid4().hex
    by_email = a_user(email=f"{marker}@example.com", created_at=at(30))
    by_name = a_user(name=f"Grace {marker.upper()}", created_at=at(10))
    by_both = a_user(email=f"x-{marker}@example.com", name=marker, created_at=at(20))
    async with uow_factory() as uow:
        for user in (by_email, by_name, by_both, a_user()):
            await uow.users.add(user)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.users.search(marker.upper()) == [by_name, by_both, by_email]
        assert await uow.users.search(marker) == [by_name, by_both, by_email]
        assert await uow.users.count(marker.upper()) == 3
        assert await uow.users.search(marker, limit=1, offset=1) == [by_both]
        assert await uow.users.search(marker, limit=2, offset=2) == [by_email]
        assert await uow.users.search(marker, offset=3) == []
        assert await uow.users.search(f"{marker}-nobody") == []
        assert await uow.users.count(f"{marker}-nobody") == 0
        assert await uow.users.count() >= 3


async def test_search_takes_wildcards_literally(uow_factory: UowFactory) -> None:
    marker = uuid.uuid4().hex
    percent = a_user(name=f"100%_{marker}")
    plain = a_user(name=f"100ab{marker}")
    async with uow_factory() as uow:
        await uow.users.add(percent)
        await uow.users.add(plain)

        assert await uow.users.search(f"%_{marker}") == [percent]
        assert await uow.users.count(f"0%_{marker}") == 1
        assert await uow.users.search(f"\\{marker}") == []


async def test_search_refuses_a_negative_page(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(InvalidInput, match="limit must not be negative"):
            await uow.users.search(limit=-1)
        with pytest.raises(InvalidInput, match="offset must not be negative"):
            await uow.users.search(offset=-1)


async def stored_with_sessions(uow_factory: UowFactory, user: User, *tokens: RefreshToken) -> None:
    async with uow_factory() as uow:
        await uow.users.add(user)
        for token in tokens:
            await uow.refresh_tokens.add(token)
        await uow.commit()


async def test_find_with_session_reads_the_user_and_whether_its_session_is_active(
    uow_factory: UowFactory,
) -> None:
    user, someone_else = a_user(role=Role.ADMIN, plan=Plan.PRO, disabled=True), a_user()
    short = a_refresh_token(user, ttl_days=1)
    revoked, spent = a_refresh_token(user), a_refresh_token(user)
    successor = spent.rotate(new_id=uuid.uuid4(), new_secret=uuid.uuid4().hex * 2, now=at(60))
    await stored_with_sessions(uow_factory, user, short, revoked, spent, successor)
    await stored_with_sessions(uow_factory, someone_else)
    async with uow_factory() as uow:
        await uow.refresh_tokens.revoke_family(revoked.family_id, at(30))
        await uow.commit()

    async with uow_factory() as uow:
        users = uow.users
        assert await users.find_with_session(user.id, short.family_id, at(60)) == (user, True)
        assert await users.find_with_session(user.id, spent.family_id, at(120)) == (user, True)
        assert await users.find_with_session(user.id, short.family_id, short.expires_at) == (
            user,
            False,
        )
        assert await users.find_with_session(user.id, revoked.family_id, at(60)) == (user, False)
        assert await users.find_with_session(user.id, uuid.uuid4(), at(60)) == (user, False)
        assert await users.find_with_session(someone_else.id, uuid.uuid4(), at(60)) == (
            someone_else,
            False,
        )
        assert await users.find_with_session(uuid.uuid4(), short.family_id, at(60)) is None


async def test_find_with_session_works_in_a_read_only_unit_of_work(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    token = a_refresh_token(user)
    await stored_with_sessions(uow_factory, user, token)

    async with uow_factory().read_only() as uow:
        assert await uow.users.find_with_session(user.id, token.family_id, at(60)) == (user, True)


async def test_get_for_update_reads_like_get_and_an_unknown_user_is_not_found(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.users.get_for_update(user.id) == user
        assert await uow.users.get_for_update(user.id) == user  # the holder may lock again
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.users.get_for_update(uuid.uuid4())


async def test_a_second_get_for_update_waits_for_the_holder_and_reads_what_it_committed(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    async def read_locked() -> User:
        async with uow_factory() as uow:
            return await uow.users.get_for_update(user.id)

    async with uow_factory() as first:
        held = await first.users.get_for_update(user.id)
        second = asyncio.create_task(read_locked())
        for _ in range(20):  # give the second every chance to get past the lock if it could
            await asyncio.sleep(0.01)
            assert not second.done()
        held.password_hash, held.updated_at = "changed by the holder", at(60)
        await first.users.update(held)
        await first.commit()

    assert await second == held


async def test_a_user_lock_is_released_when_the_unit_of_work_ends(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    async with uow_factory() as uow:
        await uow.users.get_for_update(user.id)  # rolled back
    async with uow_factory() as uow:
        assert await uow.users.get_for_update(user.id) == user


async def test_rows_referring_to_a_locked_user_can_still_be_added(uow_factory: UowFactory) -> None:
    """As the lock an UPDATE of the user takes: a session opened meanwhile (a login, a refresh)
    does not wait for the holder, which could be waiting for that session's tokens."""
    user = a_user()
    token = a_refresh_token(user)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    async def open_session() -> None:
        async with uow_factory() as uow:
            await uow.refresh_tokens.add(token)
            await uow.commit()

    async with uow_factory() as holder:
        await holder.users.get_for_update(user.id)
        # a guard against hanging only: the add waits for nothing when the lock allows it
        await asyncio.wait_for(open_session(), timeout=30)
        assert await holder.refresh_tokens.family_is_active(token.family_id, at(60))


# --- custom instructions -------------------------------------------------------------------------
async def test_a_new_user_has_no_custom_instructions_whatever_its_flag_says(
    uow_factory: UowFactory,
) -> None:
    user = a_user(has_custom_instructions=True)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    async with uow_factory() as uow:
        assert (await uow.users.get(user.id)).has_custom_instructions is False
        assert await uow.users.get_custom_instructions(user.id) is None


async def test_custom_instructions_are_set_flagged_on_every_read_and_cleared(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    token = a_refresh_token(user)
    await stored_with_sessions(uow_factory, user, token)
    key = ApiKey(
        id=uuid.uuid4(), user_id=user.id, name="k", key_hash=uuid.uuid4().hex,
        display_prefix="wk_test", created_at=at(0),
    )  # fmt: skip
    async with uow_factory() as uow:
        await uow.api_keys.add(key)
        await uow.users.set_custom_instructions(user.id, "Answer in French.", at(60))
        await uow.commit()

    flagged = msgspec.structs.replace(user, has_custom_instructions=True, updated_at=at(60))
    async with uow_factory() as uow:
        assert await uow.users.get_custom_instructions(user.id) == "Answer in French."
        assert await uow.users.get(user.id) == flagged
        assert await uow.users.get_for_update(user.id) == flagged
        assert await uow.users.find_by_email(user.email) == flagged
        assert await uow.users.search(user.email) == [flagged]
        assert await uow.users.find_with_session(user.id, token.family_id, at(60)) == (
            flagged, True,
        )  # fmt: skip
        assert await uow.api_keys.find_by_hash_with_user(key.key_hash) == (key, flagged)

    async with uow_factory() as uow:
        await uow.users.set_custom_instructions(user.id, "Answer in Latin.", at(90))
        await uow.commit()
    async with uow_factory().read_only() as uow:
        assert await uow.users.get_custom_instructions(user.id) == "Answer in Latin."

    async with uow_factory() as uow:
        await uow.users.set_custom_instructions(user.id, None, at(120))
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.users.get_custom_instructions(user.id) is None
        stored = await uow.users.get(user.id)
        assert (stored.has_custom_instructions, stored.updated_at) == (False, at(120))


async def test_an_update_leaves_the_custom_instructions_and_their_flag(
    uow_factory: UowFactory,
) -> None:
    user = a_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.users.set_custom_instructions(user.id, "Be brief.", at(10))
        await uow.commit()

    user.name = "Grace"  # read before the instructions were set: its flag is stale
    async with uow_factory() as uow:
        await uow.users.update(user)
        await uow.commit()

    async with uow_factory() as uow:
        stored = await uow.users.get(user.id)
        assert (stored.name, stored.has_custom_instructions) == ("Grace", True)
        assert await uow.users.get_custom_instructions(user.id) == "Be brief."


async def test_custom_instructions_not_committed_are_rolled_back(uow_factory: UowFactory) -> None:
    user = a_user()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()

    async with uow_factory() as uow:
        await uow.users.set_custom_instructions(user.id, "Be brief.", at(10))

    async with uow_factory() as uow:
        assert await uow.users.get(user.id) == user
        assert await uow.users.get_custom_instructions(user.id) is None


async def test_custom_instructions_of_an_unknown_user_are_not_found(
    uow_factory: UowFactory,
) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.users.get_custom_instructions(uuid.uuid4())
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.users.set_custom_instructions(uuid.uuid4(), "Be brief.", at(10))


async def test_find_with_session_end_reads_the_user_and_when_its_session_ends(
    uow_factory: UowFactory,
) -> None:
    user = a_user(plan=Plan.PRO)
    short, revoked, spent = (
        a_refresh_token(user, ttl_days=1),
        a_refresh_token(user),
        a_refresh_token(user),
    )
    successor = spent.rotate(new_id=uuid.uuid4(), new_secret=uuid.uuid4().hex * 2, now=at(60))
    await stored_with_sessions(uow_factory, user, short, revoked, spent, successor)
    async with uow_factory() as uow:
        await uow.refresh_tokens.revoke_family(revoked.family_id, at(30))
        await uow.commit()

    async with uow_factory() as uow:
        users = uow.users
        assert await users.find_with_session_end(user.id, short.family_id) == (
            user,
            short.expires_at,
        )
        # rotated: the successor keeps the family's expiry
        assert await users.find_with_session_end(user.id, spent.family_id) == (
            user,
            successor.expires_at,
        )
        assert await users.find_with_session_end(user.id, revoked.family_id) == (user, None)
        assert await users.find_with_session_end(user.id, uuid.uuid4()) == (user, None)
        assert await users.find_with_session_end(uuid.uuid4(), short.family_id) is None
