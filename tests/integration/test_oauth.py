"""OAuth sign-in end to end: the real GitHub and Google adapters against a loopback provider,
the use cases on the in-memory stack and on Postgres + Redis."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from tests.integration.conftest import UowFactory
from tests.support.oauth_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeOAuthServer,
    GitHubAccount,
    GoogleAccount,
)
from whalli.adapters.crypto.jwt_tokens import JwtAccessTokenIssuer
from whalli.adapters.embedded.stack import StackUrls
from whalli.adapters.memory.cache import InMemoryCache
from whalli.adapters.memory.store import MemoryStore
from whalli.adapters.memory.unit_of_work import InMemoryUnitOfWork
from whalli.adapters.oauth.github import GitHubOAuthProvider
from whalli.adapters.oauth.google import GoogleOAuthProvider
from whalli.adapters.postgres.pool import PostgresPool
from whalli.adapters.postgres.unit_of_work import PostgresUnitOfWork
from whalli.adapters.redis.cache import RedisCache
from whalli.adapters.redis.client import create_redis
from whalli.adapters.system.clock import SystemClock
from whalli.adapters.system.ids import UuidGenerator
from whalli.domain.model.errors import ApiKeyNotAllowed, OAuthFailed, ServiceUnavailable
from whalli.domain.model.oauth import OAuthProviderName
from whalli.domain.model.principal import Principal
from whalli.domain.model.users import User
from whalli.domain.services.auth.accounts import add_account
from whalli.domain.services.auth.authenticate import Authenticate, AuthenticateHandler
from whalli.domain.services.auth.logout_all import LogoutAll, LogoutAllHandler
from whalli.domain.services.auth.oauth_callback import CompleteOAuth, OAuthCallback, ProviderLinked
from whalli.domain.services.auth.oauth_links import LastSignInMethod, OAuthLinks, ProviderNotLinked
from whalli.domain.services.auth.oauth_start import StartOAuth
from whalli.domain.services.auth.sessions import TokenPair, open_session
from whalli.domain.services.projects.ensure_personal_project import personal_project_id
from whalli.ports.cache import Cache
from whalli.ports.oauth_provider import OAuthProvider

Providers = dict[OAuthProviderName, OAuthProvider]
JWT_SECRET = "an-integration-test-secret-of-32-bytes!"
REDIRECT_URI = "http://127.0.0.1:3001/api/auth/oauth/{}/callback"

redis_resource = asynccontextmanager(create_redis)


@dataclass
class Stack:
    uow: UowFactory
    cache: Cache


@pytest.fixture
async def redis_client(stack_urls: StackUrls) -> AsyncIterator[Redis]:
    async with redis_resource(stack_urls.redis_url) as client:
        yield client


@pytest.fixture(params=["memory", "postgres+redis"])
def stack(request: pytest.FixtureRequest, unique: str) -> Stack:
    if request.param == "memory":
        store = MemoryStore()
        return Stack(lambda: InMemoryUnitOfWork(store), InMemoryCache(SystemClock()))
    pool: PostgresPool = request.getfixturevalue("pg_pool")
    redis: Redis = request.getfixturevalue("redis_client")
    return Stack(lambda: PostgresUnitOfWork(pool), RedisCache(redis, f"whalli:test:{unique}:"))


@pytest.fixture
def server() -> Iterator[FakeOAuthServer]:
    server = FakeOAuthServer().start()
    yield server
    server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def github(http: httpx.AsyncClient, base: str, **urls: str) -> GitHubOAuthProvider:
    return GitHubOAuthProvider(
        http, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        authorize_url=f"{base}/login/oauth/authorize",
        token_url=urls.get("token_url", f"{base}/login/oauth/access_token"), api_url=base,
    )  # fmt: skip


def google(http: httpx.AsyncClient, base: str) -> GoogleOAuthProvider:
    return GoogleOAuthProvider(
        http, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        authorize_url=f"{base}/o/oauth2/v2/auth", token_url=f"{base}/token",
        userinfo_url=f"{base}/userinfo",
    )  # fmt: skip


@pytest.fixture
def providers(
    http: httpx.AsyncClient, server: FakeOAuthServer
) -> dict[OAuthProviderName, OAuthProvider]:
    return {
        OAuthProviderName.GITHUB: github(http, server.url),
        OAuthProviderName.GOOGLE: google(http, server.url),
    }


@pytest.fixture
def issuer() -> JwtAccessTokenIssuer:
    return JwtAccessTokenIssuer(
        secret=JWT_SECRET, issuer="whalli", audience="whalli-api", clock=SystemClock()
    )


@dataclass
class Attempt:
    """A sign-in the browser has started and the provider has answered (code and state)."""

    provider: OAuthProvider
    state: str
    code: str
    binding: str

    def callback(self, **overrides: str | None) -> OAuthCallback:
        fields: dict[str, str | None] = {
            "state": self.state, "code": self.code, "binding": self.binding
        }  # fmt: skip
        return OAuthCallback(**(fields | overrides))


SignIn = Callable[..., "AttemptRunner"]


class AttemptRunner:
    def __init__(self, stack: Stack, http: httpx.AsyncClient, issuer: JwtAccessTokenIssuer):
        self.start = StartOAuth(stack.cache, UuidGenerator())
        self.complete = CompleteOAuth(
            stack.uow(), stack.cache, issuer=issuer, clock=SystemClock(), ids=UuidGenerator(),
            refresh_ttl=timedelta(days=30),
        )  # fmt: skip
        self.http = http

    async def begin(self, provider: OAuthProvider) -> Attempt:
        started = await self.start.execute(
            provider, redirect_uri=REDIRECT_URI.format(provider.name)
        )
        consent = await self.http.get(started.authorization_url)  # the browser at the provider
        assert consent.status_code == 302
        query = parse_qs(urlsplit(consent.headers["location"]).query)
        assert query["state"] == [started.state]
        return Attempt(provider, started.state, query["code"][0], started.browser_binding)

    async def sign_in(self, provider: OAuthProvider) -> TokenPair:
        attempt = await self.begin(provider)
        return await self.complete.execute(provider, attempt.callback())


@pytest.fixture
def flow(stack: Stack, http: httpx.AsyncClient, issuer: JwtAccessTokenIssuer) -> AttemptRunner:
    return AttemptRunner(stack, http, issuer)


async def user_by_email(stack: Stack, email: str) -> User | None:
    async with stack.uow() as uow:
        return await uow.users.find_by_email(email)


async def existing_user(
    stack: Stack, email: str, *, disabled: bool = False, verified: bool = True
) -> User:
    """A password account (its address verified unless told: only such an account links)."""
    user = User.create(
        id=UuidGenerator().new_id(), email=email, now=SystemClock().now(), password_hash="x",
        email_verified=verified,
    )  # fmt: skip
    user.disabled = disabled
    async with stack.uow() as uow:
        await add_account(uow, user)
        await uow.commit()
    return user


def github_account(unique: str, *emails: tuple[str, bool, bool]) -> GitHubAccount:
    return GitHubAccount(id=int(unique, 16) % 10**12, login=f"octo{unique}", emails=list(emails))


# --- success ------------------------------------------------------------------------------------
async def test_a_first_github_sign_in_creates_a_verified_user_with_a_project_and_a_session(
    flow: AttemptRunner,
    stack: Stack,
    server: FakeOAuthServer,
    providers: Providers,
    issuer: JwtAccessTokenIssuer,
    unique: str,
) -> None:
    email = f"octo-{unique}@example.com"
    server.github_account = github_account(
        unique, (f"old-{unique}@example.com", False, True), (email, True, True)
    )

    tokens = await flow.sign_in(providers[OAuthProviderName.GITHUB])

    user = await user_by_email(stack, email)
    assert user is not None
    assert (user.email_verified, user.password_hash, user.role, user.plan) == (
        True, None, "user", "free",
    )  # fmt: skip
    assert user.name == f"octo{unique}"
    assert issuer.verify(tokens.access_token).subject == user.id
    assert len(tokens.refresh_token) >= 43
    async with stack.uow() as uow:
        identity = await uow.oauth_identities.find(
            OAuthProviderName.GITHUB, str(server.github_account.id)
        )
        projects = await uow.projects.list_for_user(user.id)
    assert identity is not None
    assert identity.user_id == user.id
    assert [p.id for p in projects if p.personal] == [personal_project_id(user.id)]
    assert server.token_requests[-1]["code_verifier"]


async def test_signing_in_again_with_the_same_provider_account_returns_the_same_user(
    flow: AttemptRunner,
    stack: Stack,
    server: FakeOAuthServer,
    providers: Providers,
    issuer: JwtAccessTokenIssuer,
    unique: str,
) -> None:
    server.google_account = GoogleAccount(sub=f"g-{unique}", email=f"ada-{unique}@example.com")
    first = await flow.sign_in(providers[OAuthProviderName.GOOGLE])
    # The address changed at Google since: the link, not the email, identifies the account.
    server.google_account = GoogleAccount(sub=f"g-{unique}", email=f"new-{unique}@example.com")

    second = await flow.sign_in(providers[OAuthProviderName.GOOGLE])

    assert issuer.verify(second.access_token).subject == issuer.verify(first.access_token).subject
    assert second.refresh_token != first.refresh_token
    assert await user_by_email(stack, f"new-{unique}@example.com") is None


async def test_a_verified_email_links_the_provider_account_to_the_existing_user(
    flow: AttemptRunner,
    stack: Stack,
    server: FakeOAuthServer,
    providers: Providers,
    issuer: JwtAccessTokenIssuer,
    unique: str,
) -> None:
    user = await existing_user(stack, f"linked-{unique}@example.com")
    server.google_account = GoogleAccount(sub=f"g-{unique}", email=f"Linked-{unique}@Example.com")

    tokens = await flow.sign_in(providers[OAuthProviderName.GOOGLE])

    assert issuer.verify(tokens.access_token).subject == user.id
    async with stack.uow() as uow:
        identity = await uow.oauth_identities.find(OAuthProviderName.GOOGLE, f"g-{unique}")
    assert identity is not None
    assert identity.user_id == user.id


async def test_a_verified_email_never_joins_an_account_whose_email_nobody_verified(
    flow: AttemptRunner,
    stack: Stack,
    server: FakeOAuthServer,
    providers: Providers,
    issuer: JwtAccessTokenIssuer,
    unique: str,
) -> None:
    """Its maker (here an unverified Google identity) keeps it; the verified owner is told,
    and nothing is linked: no one shares the account with whoever made it first."""
    email = f"squatted-{unique}@example.com"
    server.google_account = GoogleAccount(sub=f"g-{unique}", email=email, email_verified=False)
    squatter = await flow.sign_in(providers[OAuthProviderName.GOOGLE])
    squatted = await user_by_email(stack, email)
    assert squatted is not None
    server.github_account = github_account(unique, (email, True, True))

    with pytest.raises(OAuthFailed, match="with its password"):
        await flow.sign_in(providers[OAuthProviderName.GITHUB])

    assert await user_by_email(stack, email) == squatted
    async with stack.uow() as uow:
        github = await uow.oauth_identities.find(
            OAuthProviderName.GITHUB, str(int(unique, 16) % 10**12)
        )
    assert github is None
    again = await flow.sign_in(providers[OAuthProviderName.GOOGLE])
    assert issuer.verify(again.access_token).subject == squatted.id
    assert issuer.verify(squatter.access_token).subject == squatted.id


async def test_a_github_name_of_only_control_characters_falls_back_to_the_login(
    flow: AttemptRunner, stack: Stack, server: FakeOAuthServer, providers: Providers, unique: str
) -> None:
    email = f"blank-{unique}@example.com"
    server.github_account = github_account(unique, (email, True, True))
    server.github_account.name = "\t\n"

    await flow.sign_in(providers[OAuthProviderName.GITHUB])

    user = await user_by_email(stack, email)
    assert user is not None
    assert user.name == f"octo{unique}"


async def test_an_unverified_email_never_links_to_an_existing_account(
    flow: AttemptRunner,
    stack: Stack,
    server: FakeOAuthServer,
    providers: Providers,
    unique: str,
) -> None:
    await existing_user(stack, f"victim-{unique}@example.com")
    server.google_account = GoogleAccount(
        sub=f"g-{unique}", email=f"victim-{unique}@example.com", email_verified=False
    )

    with pytest.raises(OAuthFailed, match="email not verified"):
        await flow.sign_in(providers[OAuthProviderName.GOOGLE])

    async with stack.uow() as uow:
        assert await uow.oauth_identities.find(OAuthProviderName.GOOGLE, f"g-{unique}") is None


async def test_an_unverified_email_nobody_uses_creates_an_unverified_account(
    flow: AttemptRunner,
    stack: Stack,
    server: FakeOAuthServer,
    providers: Providers,
    unique: str,
) -> None:
    email = f"fresh-{unique}@example.com"
    server.google_account = GoogleAccount(sub=f"g-{unique}", email=email, email_verified=False)

    await flow.sign_in(providers[OAuthProviderName.GOOGLE])

    user = await user_by_email(stack, email)
    assert user is not None
    assert user.email_verified is False


async def test_a_github_account_without_a_verified_primary_email_is_refused(
    flow: AttemptRunner,
    stack: Stack,
    server: FakeOAuthServer,
    providers: Providers,
    unique: str,
) -> None:
    email = f"unverified-{unique}@example.com"
    server.github_account = github_account(unique, (email, True, False))

    with pytest.raises(OAuthFailed, match="verified email"):
        await flow.sign_in(providers[OAuthProviderName.GITHUB])

    assert await user_by_email(stack, email) is None


async def test_a_disabled_account_cannot_sign_in(
    flow: AttemptRunner,
    stack: Stack,
    server: FakeOAuthServer,
    providers: Providers,
    unique: str,
) -> None:
    await existing_user(stack, f"off-{unique}@example.com", disabled=True)
    server.google_account = GoogleAccount(sub=f"g-{unique}", email=f"off-{unique}@example.com")

    with pytest.raises(OAuthFailed, match="disabled"):
        await flow.sign_in(providers[OAuthProviderName.GOOGLE])


# --- state and browser binding ----------------------------------------------------------------
async def test_a_callback_without_a_state_is_refused(
    flow: AttemptRunner, providers: Providers
) -> None:
    attempt = await flow.begin(providers[OAuthProviderName.GITHUB])

    with pytest.raises(OAuthFailed, match="invalid state"):
        await flow.complete.execute(attempt.provider, attempt.callback(state=None))


async def test_an_unknown_state_is_refused(flow: AttemptRunner, providers: Providers) -> None:
    attempt = await flow.begin(providers[OAuthProviderName.GITHUB])

    with pytest.raises(OAuthFailed, match="invalid state"):
        await flow.complete.execute(attempt.provider, attempt.callback(state="x" * 43))


async def test_a_state_presented_by_another_browser_is_refused_and_spent(
    flow: AttemptRunner, providers: Providers
) -> None:
    attempt = await flow.begin(providers[OAuthProviderName.GITHUB])
    other_browser = await flow.begin(providers[OAuthProviderName.GITHUB])

    with pytest.raises(OAuthFailed, match="invalid state"):
        await flow.complete.execute(attempt.provider, attempt.callback(binding=None))
    with pytest.raises(OAuthFailed, match="invalid state"):
        await flow.complete.execute(
            attempt.provider, attempt.callback(binding=other_browser.binding)
        )
    # The first refusal spent the state: the right cookie no longer helps an attacker's replay.
    with pytest.raises(OAuthFailed, match="invalid state"):
        await flow.complete.execute(attempt.provider, attempt.callback())


async def test_a_state_started_for_another_provider_is_refused(
    flow: AttemptRunner, providers: Providers
) -> None:
    attempt = await flow.begin(providers[OAuthProviderName.GITHUB])

    with pytest.raises(OAuthFailed, match="invalid state"):
        await flow.complete.execute(providers[OAuthProviderName.GOOGLE], attempt.callback())


async def test_a_state_works_only_once(
    flow: AttemptRunner,
    server: FakeOAuthServer,
    providers: Providers,
    unique: str,
) -> None:
    server.github_account = github_account(unique, (f"once-{unique}@example.com", True, True))
    attempt = await flow.begin(providers[OAuthProviderName.GITHUB])
    await flow.complete.execute(attempt.provider, attempt.callback())

    with pytest.raises(OAuthFailed, match="invalid state"):
        await flow.complete.execute(attempt.provider, attempt.callback())


# --- the provider says no, or is down ------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "error"),
    [
        (OAuthProviderName.GITHUB, "bad_verification_code"),
        (OAuthProviderName.GOOGLE, "invalid_grant"),
    ],
)
async def test_a_code_the_provider_refuses_fails_with_the_providers_error_code(
    flow: AttemptRunner,
    providers: Providers,
    name: OAuthProviderName,
    error: str,
) -> None:
    attempt = await flow.begin(providers[name])

    with pytest.raises(OAuthFailed, match=f"refused the sign-in code \\({error}\\)"):
        await flow.complete.execute(attempt.provider, attempt.callback(code="forged-code"))


async def test_a_wrong_client_secret_is_refused_without_revealing_it(
    flow: AttemptRunner, http: httpx.AsyncClient, server: FakeOAuthServer
) -> None:
    provider = GitHubOAuthProvider(
        http, client_id=CLIENT_ID, client_secret="not-the-secret",
        authorize_url=f"{server.url}/login/oauth/authorize",
        token_url=f"{server.url}/login/oauth/access_token", api_url=server.url,
    )  # fmt: skip
    attempt = await flow.begin(provider)

    with pytest.raises(OAuthFailed, match="incorrect_client_credentials") as failure:
        await flow.complete.execute(provider, attempt.callback())

    assert "not-the-secret" not in str(failure.value)
    assert "not-the-secret" not in repr(provider)


@pytest.mark.parametrize("name", list(OAuthProviderName))
async def test_a_provider_answering_500_is_unavailable(
    flow: AttemptRunner,
    server: FakeOAuthServer,
    providers: Providers,
    name: OAuthProviderName,
) -> None:
    attempt = await flow.begin(providers[name])
    server.failing = True

    with pytest.raises(ServiceUnavailable, match="HTTP 500"):
        await flow.complete.execute(attempt.provider, attempt.callback())


async def test_an_unreachable_provider_is_unavailable(
    flow: AttemptRunner, http: httpx.AsyncClient, server: FakeOAuthServer
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    provider = github(http, server.url, token_url=f"http://127.0.0.1:{closed_port}/token")
    attempt = await flow.begin(provider)

    with pytest.raises(ServiceUnavailable, match="unreachable"):
        await flow.complete.execute(provider, attempt.callback())


# --- linking a provider to a signed-in account ----------------------------------------------------
async def signed_in(
    stack: Stack, issuer: JwtAccessTokenIssuer, email: str, *, password: bool = True
) -> Principal:
    """A password account whose address nobody verified (or one without a password, made by
    a provider), signed in: its session's principal."""
    user = User.create(
        id=UuidGenerator().new_id(), email=email, now=SystemClock().now(),
        password_hash="x" if password else None,
    )  # fmt: skip
    async with stack.uow() as uow:
        await add_account(uow, user)
        tokens = await open_session(
            uow, user, issuer=issuer, clock=SystemClock(), ids=UuidGenerator(),
            refresh_ttl=timedelta(days=1),
        )  # fmt: skip
        await uow.commit()
    authenticate = AuthenticateHandler(stack.uow(), issuer=issuer, clock=SystemClock())
    return await authenticate.execute(Authenticate(credential=tokens.access_token))


async def link(flow: AttemptRunner, provider: OAuthProvider, principal: Principal) -> object:
    started = await flow.start.execute(
        provider, redirect_uri=REDIRECT_URI.format(provider.name), link_to=principal
    )
    consent = await flow.http.get(started.authorization_url)
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]
    callback = OAuthCallback(state=started.state, code=code, binding=started.browser_binding)
    return await flow.complete.execute(provider, callback)


async def test_a_signed_in_account_links_a_provider_whose_address_vouches_for_its_own(
    flow: AttemptRunner, stack: Stack, server: FakeOAuthServer, providers: Providers,
    issuer: JwtAccessTokenIssuer, unique: str,
) -> None:  # fmt: skip
    """The sign-in refused for an unconfirmed account works once its owner links the
    provider while signed in; the provider's verified address, the account's own, verifies it."""
    email = f"owner-{unique}@example.com"
    principal = await signed_in(stack, issuer, email)
    server.github_account = github_account(unique, (email, True, True))
    with pytest.raises(OAuthFailed, match="link this provider"):
        await flow.sign_in(providers[OAuthProviderName.GITHUB])

    linked = await link(flow, providers[OAuthProviderName.GITHUB], principal)

    assert linked == ProviderLinked(provider=OAuthProviderName.GITHUB, user_id=principal.user_id)
    account = await user_by_email(stack, email)
    assert account is not None
    assert account.email_verified
    assert account.password_hash == "x"  # nothing else changed
    tokens = await flow.sign_in(providers[OAuthProviderName.GITHUB])
    assert issuer.verify(tokens.access_token).subject == principal.user_id


async def test_a_provider_account_linked_to_another_account_is_not_moved(
    flow: AttemptRunner, stack: Stack, server: FakeOAuthServer, providers: Providers,
    issuer: JwtAccessTokenIssuer, unique: str,
) -> None:  # fmt: skip
    server.google_account = GoogleAccount(sub=f"g-{unique}", email=f"first-{unique}@example.com")
    first = await flow.sign_in(providers[OAuthProviderName.GOOGLE])
    principal = await signed_in(stack, issuer, f"second-{unique}@example.com")

    with pytest.raises(OAuthFailed, match="already linked to another account"):
        await link(flow, providers[OAuthProviderName.GOOGLE], principal)

    again = await flow.sign_in(providers[OAuthProviderName.GOOGLE])
    assert issuer.verify(again.access_token).subject == issuer.verify(first.access_token).subject
    second = await user_by_email(stack, f"second-{unique}@example.com")
    assert second is not None
    assert not second.email_verified


async def test_a_link_whose_session_ended_meanwhile_is_refused(
    flow: AttemptRunner, stack: Stack, server: FakeOAuthServer, providers: Providers,
    issuer: JwtAccessTokenIssuer, unique: str,
) -> None:  # fmt: skip
    principal = await signed_in(stack, issuer, f"gone-{unique}@example.com")
    assert principal.session_id is not None
    provider = providers[OAuthProviderName.GITHUB]
    server.github_account = github_account(unique, (f"x-{unique}@example.com", True, True))
    started = await flow.start.execute(
        provider, redirect_uri=REDIRECT_URI.format(provider.name), link_to=principal
    )
    await LogoutAllHandler(stack.uow(), clock=SystemClock()).execute(
        LogoutAll(user_id=principal.user_id)
    )
    consent = await flow.http.get(started.authorization_url)
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]

    with pytest.raises(OAuthFailed, match="session that asked for this link has ended"):
        await flow.complete.execute(
            provider, OAuthCallback(state=started.state, code=code, binding=started.browser_binding)
        )
    async with stack.uow() as uow:
        assert await uow.oauth_identities.list_for_user(principal.user_id) == []


async def test_an_api_key_cannot_start_a_link(
    flow: AttemptRunner, stack: Stack, providers: Providers, issuer: JwtAccessTokenIssuer,
    unique: str,
) -> None:  # fmt: skip
    principal = await signed_in(stack, issuer, f"key-{unique}@example.com")
    by_key = Principal(user=principal.user, api_key_id=UuidGenerator().new_id())
    with pytest.raises(ApiKeyNotAllowed):
        await flow.start.execute(
            providers[OAuthProviderName.GITHUB], redirect_uri="http://x/cb", link_to=by_key
        )


async def test_the_last_way_into_an_account_cannot_be_unlinked(
    flow: AttemptRunner, stack: Stack, server: FakeOAuthServer, providers: Providers,
    issuer: JwtAccessTokenIssuer, unique: str,
) -> None:  # fmt: skip
    """An account without a password, linked to GitHub and Google: one of them may go, not
    both; with a password, the last one may go too."""
    principal = await signed_in(stack, issuer, f"nopass-{unique}@example.com", password=False)
    server.github_account = github_account(unique, (f"gh-{unique}@example.com", True, True))
    server.google_account = GoogleAccount(sub=f"g-{unique}", email=f"go-{unique}@example.com")
    await link(flow, providers[OAuthProviderName.GITHUB], principal)
    await link(flow, providers[OAuthProviderName.GOOGLE], principal)
    links = OAuthLinks(stack.uow())
    assert [x.provider for x in await links.list(principal)] == [
        OAuthProviderName.GITHUB, OAuthProviderName.GOOGLE,
    ]  # fmt: skip

    await links.unlink(principal, OAuthProviderName.GITHUB)
    with pytest.raises(LastSignInMethod, match="only way to sign in"):
        await links.unlink(principal, OAuthProviderName.GOOGLE)
    with pytest.raises(ProviderNotLinked):
        await links.unlink(principal, OAuthProviderName.GITHUB)
    assert [x.provider for x in await links.list(principal)] == [OAuthProviderName.GOOGLE]

    with_password = await signed_in(stack, issuer, f"pass-{unique}@example.com")
    server.google_account = GoogleAccount(sub=f"g2-{unique}", email=f"go2-{unique}@example.com")
    await link(flow, providers[OAuthProviderName.GOOGLE], with_password)
    await links.unlink(with_password, OAuthProviderName.GOOGLE)
    assert await links.list(with_password) == []
