"""Contract of OAuthIdentityRepository, on the in-memory and the Postgres unit of work."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from whalli.domain.model.errors import Conflict, UserNotFound
from whalli.domain.model.oauth import OAuthIdentity, OAuthProviderName
from whalli.domain.model.users import User

from ..conftest import UowFactory
from ..entities import NOW, a_user


def an_identity(
    user: User,
    *,
    provider: OAuthProviderName = OAuthProviderName.GITHUB,
    subject: str | None = None,
    email: str | None = None,
) -> OAuthIdentity:
    return OAuthIdentity(
        provider=provider, subject=subject or uuid.uuid4().hex, user_id=user.id, email=email,
        created_at=NOW,
    )  # fmt: skip


async def test_an_identity_reads_back_equal(uow_factory: UowFactory) -> None:
    user = a_user()
    github = an_identity(user, email=user.email)
    google = an_identity(user, provider=OAuthProviderName.GOOGLE, subject=github.subject)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.oauth_identities.add(github)
        await uow.oauth_identities.add(google)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.oauth_identities.find(OAuthProviderName.GITHUB, github.subject) == github
        assert await uow.oauth_identities.find(OAuthProviderName.GOOGLE, github.subject) == google


async def test_an_unknown_identity_finds_nothing(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        assert await uow.oauth_identities.find(OAuthProviderName.GOOGLE, uuid.uuid4().hex) is None


async def test_an_identity_needs_an_existing_user(uow_factory: UowFactory) -> None:
    async with uow_factory() as uow:
        with pytest.raises(UserNotFound, match="User not found"):
            await uow.oauth_identities.add(an_identity(a_user()))


async def test_a_linked_provider_account_cannot_be_linked_again_and_the_work_can_go_on(
    uow_factory: UowFactory,
) -> None:
    first, second = a_user(), a_user()
    identity = an_identity(first)
    other = an_identity(second)
    async with uow_factory() as uow:
        await uow.users.add(first)
        await uow.users.add(second)
        await uow.oauth_identities.add(identity)
        with pytest.raises(Conflict, match="already linked"):
            await uow.oauth_identities.add(an_identity(second, subject=identity.subject))
        await uow.oauth_identities.add(other)
        await uow.commit()

    async with uow_factory() as uow:
        with pytest.raises(Conflict, match="already linked"):
            await uow.oauth_identities.add(an_identity(second, subject=identity.subject))
        assert await uow.oauth_identities.find(identity.provider, identity.subject) == identity
        assert await uow.oauth_identities.find(other.provider, other.subject) == other


async def test_a_users_links_are_listed_oldest_first_and_removed_by_provider(
    uow_factory: UowFactory,
) -> None:
    user, other = a_user(), a_user()
    google = an_identity(user, provider=OAuthProviderName.GOOGLE)
    github = OAuthIdentity(
        provider=OAuthProviderName.GITHUB, subject=uuid.uuid4().hex, user_id=user.id,
        email=None, created_at=NOW + timedelta(seconds=1),
    )  # fmt: skip
    theirs = an_identity(other)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.users.add(other)
        for identity in (github, google, theirs):
            await uow.oauth_identities.add(identity)
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.oauth_identities.list_for_user(user.id) == [google, github]
        assert await uow.oauth_identities.remove(user.id, OAuthProviderName.GITHUB) == 1
        assert await uow.oauth_identities.remove(user.id, OAuthProviderName.GITHUB) == 0
        await uow.commit()

    async with uow_factory() as uow:
        assert await uow.oauth_identities.list_for_user(user.id) == [google]
        assert await uow.oauth_identities.list_for_user(other.id) == [theirs]
        assert await uow.oauth_identities.find(OAuthProviderName.GITHUB, github.subject) is None
