from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import Caller, seed_api_key
from tests.unit.http.fakes import FakeContainer
from whalli.domain.model.oauth import OAuthProfile, OAuthProviderName
from whalli.domain.services.auth.oauth_start import pkce_challenge, state_key
from whalli.entrypoints.http.app import create_app

AUTHORIZE = "/api/auth/oauth/{}/authorize"
CALLBACK = "/api/auth/oauth/{}/callback"


@pytest.fixture
def app(container: FakeContainer) -> Litestar:
    return create_app(container)


def profile(provider: OAuthProviderName = OAuthProviderName.GITHUB) -> OAuthProfile:
    return OAuthProfile(
        provider=provider, subject="42", email="octo@example.com", email_verified=True, name="Octo"
    )


async def start(client: AsyncTestClient[Litestar], provider: str = "github") -> tuple[str, str]:
    """Follow the authorize redirect as a browser would: the state and the binding cookie."""
    response = await client.get(AUTHORIZE.format(provider), follow_redirects=False)
    state = parse_qs(urlsplit(response.headers["location"]).query)["state"][0]
    return state, response.cookies["whalli_oauth"]


async def test_authorize_redirects_to_the_provider_with_state_and_pkce_and_sets_the_cookie(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    response = await client.get(AUTHORIZE.format("github"), follow_redirects=False)

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert (
        f"{location.scheme}://{location.netloc}{location.path}" == "https://provider.test/authorize"
    )
    assert len(query["state"]) >= 43
    assert query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == "http://127.0.0.1:3001/api/auth/oauth/github/callback"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("whalli_oauth=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert attributes >= {
        "httponly",
        "secure",
        "samesite=lax",
        "path=/api/auth/oauth",
        "max-age=600",
    }
    assert response.headers["cache-control"] == "no-store"
    pending = await container.cache.get(state_key(query["state"]))
    assert pending is not None
    assert query["code_challenge"] != pkce_challenge(query["state"])  # a verifier of its own


async def test_the_callback_redirects_to_the_web_app_with_the_tokens_in_the_fragment(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    state, binding = await start(client)
    code = container.oauth_providers["github"].approve(state, profile())

    response = await client.get(
        CALLBACK.format("github"), params={"code": code, "state": state},
        headers={"Cookie": f"whalli_oauth={binding}"}, follow_redirects=False,
    )  # fmt: skip

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == container.settings.web_url
    assert location.query == ""
    tokens = {k: v[0] for k, v in parse_qs(location.fragment).items()}
    assert set(tokens) == {"accessToken", "refreshToken", "expiresIn", "tokenType"}
    claims = container.issuer.verify(tokens["accessToken"])
    async with container.uow() as uow:
        user = await uow.users.find_by_email("octo@example.com")
    assert user is not None
    assert claims.subject == user.id
    assert 'whalli_oauth=""' in response.headers["set-cookie"]
    assert "Max-Age=0" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    ("params", "headers"),
    [({"format": "json"}, {}), ({}, {"Accept": "application/json"})],
)
async def test_the_callback_answers_json_when_asked(
    client: AsyncTestClient[Litestar], container: FakeContainer,
    params: dict[str, str], headers: dict[str, str],
) -> None:  # fmt: skip
    state, binding = await start(client, "google")
    code = container.oauth_providers["google"].approve(state, profile(OAuthProviderName.GOOGLE))

    response = await client.get(
        CALLBACK.format("google"), params={"code": code, "state": state, **params},
        headers={"Cookie": f"whalli_oauth={binding}", **headers},
    )  # fmt: skip

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"accessToken", "refreshToken", "expiresIn", "tokenType"}
    assert body["expiresIn"] == container.settings.access_token_ttl_s
    assert response.headers["cache-control"] == "no-store"


async def test_a_callback_without_the_browser_cookie_is_a_400(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    state, _ = await start(client)
    code = container.oauth_providers["github"].approve(state, profile())

    response = await client.get(CALLBACK.format("github"), params={"code": code, "state": state})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "oauth_failed"
    assert response.json()["detail"] == "invalid state"


async def test_a_refusal_at_the_provider_is_a_400(client: AsyncTestClient[Litestar]) -> None:
    state, binding = await start(client)

    response = await client.get(
        CALLBACK.format("github"), params={"error": "access_denied", "state": state},
        headers={"Cookie": f"whalli_oauth={binding}"},
    )  # fmt: skip

    assert response.status_code == 400
    assert response.json()["code"] == "oauth_failed"


async def test_an_unavailable_provider_is_a_503(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    state, binding = await start(client)
    code = container.oauth_providers["github"].approve(state, profile())
    container.oauth_providers["github"].down = True

    response = await client.get(
        CALLBACK.format("github"), params={"code": code, "state": state},
        headers={"Cookie": f"whalli_oauth={binding}"},
    )  # fmt: skip

    assert response.status_code == 503


async def test_unknown_and_disabled_providers_are_404(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    del container.oauth_providers["google"]

    unknown = await client.get(AUTHORIZE.format("myspace"), follow_redirects=False)
    disabled = await client.get(AUTHORIZE.format("google"), follow_redirects=False)
    callback = await client.get(CALLBACK.format("google"), params={"code": "c", "state": "s"})

    assert [unknown.status_code, disabled.status_code, callback.status_code] == [404, 404, 404]
    assert "set-cookie" not in disabled.headers


# --- linking a provider to the signed-in caller's account -----------------------------------------
LINK = "/api/auth/oauth/{}/link"
LINKS = "/api/auth/oauth/links"


async def test_a_signed_in_user_links_a_provider_then_signs_in_with_it_and_unlinks_it(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    """A password account links GitHub whatever GitHub's address (here another one); a
    GitHub sign-in then enters that account; only a session may link or unlink."""
    user, secret = await seed_api_key(container, "linker")
    caller = Caller(user, secret, client)
    assert (await caller.call("POST", LINK.format("github"))).status_code == 403

    started = await caller.call_signed_in("POST", LINK.format("github"))
    assert started.status_code == 200, started.text
    assert started.headers["cache-control"] == "no-store"
    url = urlsplit(started.json()["authorizationUrl"])
    state = parse_qs(url.query)["state"][0]
    binding = started.cookies["whalli_oauth"]
    other = OAuthProfile(
        provider=OAuthProviderName.GITHUB, subject="7", email="someone-else@example.com",
        email_verified=True, name="Octo",
    )  # fmt: skip
    code = container.oauth_providers["github"].approve(state, other)
    done = await client.get(
        CALLBACK.format("github"), params={"code": code, "state": state},
        headers={"Cookie": f"whalli_oauth={binding}"}, follow_redirects=False,
    )  # fmt: skip
    assert done.status_code == 302, done.text
    assert urlsplit(done.headers["location"]).fragment == "linked=github"

    links = (await caller.call("GET", LINKS)).json()["items"]
    assert [(link["provider"], link["email"]) for link in links] == [
        ("github", "someone-else@example.com")
    ]
    state, binding = await start(client)
    code = container.oauth_providers["github"].approve(state, other)
    signed_in = await client.get(
        CALLBACK.format("github"), params={"code": code, "state": state, "format": "json"},
        headers={"Cookie": f"whalli_oauth={binding}"},
    )  # fmt: skip
    assert signed_in.status_code == 200, signed_in.text
    assert container.issuer.verify(signed_in.json()["accessToken"]).subject == user.id

    assert (await caller.call("DELETE", LINK.format("github"))).status_code == 403
    assert (await caller.call_signed_in("DELETE", LINK.format("github"))).status_code == 204
    assert (await caller.call("GET", LINKS)).json()["items"] == []
    gone = await caller.call_signed_in("DELETE", LINK.format("github"))
    assert gone.status_code == 404
    assert gone.json()["code"] == "provider_not_linked"
    assert (await caller.call_signed_in("DELETE", LINK.format("gitlab"))).status_code == 404


async def test_a_link_callback_answers_json_when_asked(
    client: AsyncTestClient[Litestar], container: FakeContainer
) -> None:
    user, secret = await seed_api_key(container, "jsonlinker")
    caller = Caller(user, secret, client)
    started = await caller.call_signed_in("POST", LINK.format("google"))
    state = parse_qs(urlsplit(started.json()["authorizationUrl"]).query)["state"][0]
    code = container.oauth_providers["google"].approve(state, profile(OAuthProviderName.GOOGLE))
    done = await client.get(
        CALLBACK.format("google"), params={"code": code, "state": state, "format": "json"},
        headers={"Cookie": f"whalli_oauth={started.cookies['whalli_oauth']}"},
    )  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json() == {"linked": "google"}
