"""CompleteOAuth's account rules on the in-memory stack: a verified email never links to an
account whose address nobody verified (and changes nothing of it), links to a verified one
leaving it as it is, and a provider's odd name never blocks."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.clock import ManualClock
from whalli.adapters.memory.ids import SequentialIds
from whalli.adapters.memory.oauth_provider import FakeOAuthProvider
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.domain.model.api_keys import API_KEY_PREFIX, ApiKey
from whalli.domain.model.errors import OAuthFailed
from whalli.domain.model.oauth import OAuthIdentity, OAuthProfile, OAuthProviderName
from whalli.domain.model.principal import Principal
from whalli.domain.model.users import User
from whalli.domain.services.auth.accounts import add_account
from whalli.domain.services.auth.authenticate import Authenticate, AuthenticateHandler
from whalli.domain.services.auth.oauth_callback import (
    UNCONFIRMED_ACCOUNT,
    CompleteOAuth,
    OAuthCallback,
)
from whalli.domain.services.auth.oauth_start import StartOAuth
from whalli.domain.services.auth.sessions import TokenPair, open_session

EMAIL = "ada@example.com"
GITHUB, GOOGLE = OAuthProviderName.GITHUB, OAuthProviderName.GOOGLE
INVALID = "The token is invalid or has expired."


class World:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock()
        self.ids = SequentialIds()
        self.cache = InMemoryCache(self.clock)
        self.issuer = JwtAccessTokenIssuer(
            secret="s" * 32, issuer="whalli", audience="whalli-api", clock=self.clock
        )
        self.providers = {name: FakeOAuthProvider(name) for name in OAuthProviderName}

    def uow(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.store)

    async def sign_in(
        self, provider: OAuthProviderName, subject: str, *, verified: bool = True, name: str = ""
    ) -> TokenPair:
        fake = self.providers[provider]
        started = await StartOAuth(self.cache, self.ids).execute(fake, redirect_uri="http://cb")
        profile = OAuthProfile(
            provider=provider, subject=subject, email=EMAIL, email_verified=verified, name=name
        )
        code = fake.approve(started.state, profile)
        complete = CompleteOAuth(
            self.uow(), self.cache, issuer=self.issuer, clock=self.clock, ids=self.ids,
            refresh_ttl=timedelta(days=30),
        )  # fmt: skip
        callback = OAuthCallback(state=started.state, code=code, binding=started.browser_binding)
        return await complete.execute(fake, callback)

    async def account(self, *, verified: bool, disabled: bool = False) -> User:
        user = User.create(
            id=self.ids.new_id(), email=EMAIL, now=self.clock.now(), password_hash="squatter's",
            email_verified=verified,
        )  # fmt: skip
        user.disabled = disabled
        async with self.uow() as uow:
            await add_account(uow, user)
            await uow.commit()
        return user

    async def session(self, user: User) -> TokenPair:
        async with self.uow() as uow:
            tokens = await open_session(
                uow, user, issuer=self.issuer, clock=self.clock, ids=self.ids,
                refresh_ttl=timedelta(days=30),
            )  # fmt: skip
            await uow.commit()
        return tokens

    async def api_key(self, user: User) -> str:
        secret = API_KEY_PREFIX + self.ids.new_token(32)
        key = ApiKey.create(
            id=self.ids.new_id(), user_id=user.id, name="ci", secret=secret, now=self.clock.now()
        )
        async with self.uow() as uow:
            await uow.api_keys.add(key)
            await uow.commit()
        return secret

    async def link(self, user: User, provider: OAuthProviderName, subject: str) -> None:
        identity = OAuthIdentity(
            provider=provider, subject=subject, user_id=user.id, email=EMAIL,
            created_at=self.clock.now(),
        )  # fmt: skip
        async with self.uow() as uow:
            await uow.oauth_identities.add(identity)
            await uow.commit()

    async def authenticate(self, credential: str) -> Principal:
        handler = AuthenticateHandler(self.uow(), issuer=self.issuer, clock=self.clock)
        return await handler.execute(Authenticate(credential=credential))

    async def user(self, user: User) -> User:
        async with self.uow() as uow:
            return await uow.users.get(user.id)

    async def linked_to(self, provider: OAuthProviderName, subject: str) -> UUID | None:
        async with self.uow() as uow:
            identity = await uow.oauth_identities.find(provider, subject)
        return None if identity is None else identity.user_id

    async def enable(self, user: User) -> None:
        async with self.uow() as uow:
            fresh = await uow.users.get(user.id)
            fresh.disabled = False
            await uow.users.update(fresh)
            await uow.commit()


@pytest.fixture
def world() -> World:
    return World()


async def test_a_verified_sign_in_never_joins_an_account_whose_address_nobody_verified(
    world: World,
) -> None:
    """Linking would leave the squatter's password, session, key and identity in the account
    the address's owner then uses; so nothing is linked, and nothing of the account changes
    (an honest user who signed up with a password keeps it, and their keys)."""
    squatted = await world.account(verified=False)
    squatter_session = await world.session(squatted)
    squatter_key = await world.api_key(squatted)
    await world.link(squatted, GOOGLE, "squatters-google")

    with pytest.raises(OAuthFailed, match="with its password") as refused:
        await world.sign_in(GITHUB, "owners-github")

    assert refused.value.message == UNCONFIRMED_ACCOUNT
    assert await world.user(squatted) == squatted
    assert await world.linked_to(GITHUB, "owners-github") is None
    assert await world.linked_to(GOOGLE, "squatters-google") == squatted.id
    for credential in (squatter_session.access_token, squatter_key):
        assert (await world.authenticate(credential)).user_id == squatted.id


async def test_a_verified_sign_in_links_to_a_verified_account_and_leaves_it_as_it_is(
    world: World,
) -> None:
    user = await world.account(verified=True)
    session = await world.session(user)
    key = await world.api_key(user)
    await world.link(user, GITHUB, "owners-github")

    tokens = await world.sign_in(GOOGLE, "owners-google")

    assert await world.user(user) == user
    for credential in (tokens.access_token, session.access_token, key):
        assert (await world.authenticate(credential)).user_id == user.id
    assert await world.linked_to(GITHUB, "owners-github") == user.id
    assert await world.linked_to(GOOGLE, "owners-google") == user.id


async def test_a_disabled_account_is_not_signed_into_nor_linked(world: World) -> None:
    user = await world.account(verified=True, disabled=True)
    key = await world.api_key(user)

    with pytest.raises(OAuthFailed, match="disabled"):
        await world.sign_in(GITHUB, "owners-github")

    assert await world.user(user) == user
    assert await world.linked_to(GITHUB, "owners-github") is None
    await world.enable(user)
    assert (await world.authenticate(key)).api_key_id is not None


@pytest.mark.parametrize(
    ("given", "stored"), [("Ada\tLovelace\n", "Ada Lovelace"), ("\x00\t\x07", "")]
)
async def test_a_provider_name_with_control_characters_is_cleaned_not_refused(
    world: World, given: str, stored: str
) -> None:
    tokens = await world.sign_in(GITHUB, "new-github", name=given)

    assert (await world.authenticate(tokens.access_token)).user.name == stored
