"""Address verification under attack (s31 hunt): through the HTTP app on the fake container, the
worker's side (``SendEmailVerificationHandler``) run by hand on the queued jobs."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.accounts import seed_caller
from tests.unit.http.fakes import FakeContainer
from tests.unit.http.test_email_verification_routes import _mailed

SESSION_ONLY_DOCUMENTED = [{"accessToken": []}]


async def test_an_api_key_can_neither_ask_for_nor_confirm_a_verification_counted_or_not(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    # A verified address is a way into the account (an OAuth sign-in with it joins it), so
    # proving it is a session's act, as linking a provider is: not a key handed to a tool.
    ada = await seed_caller(container, client, "ada")

    asked = await ada.call("POST", "/api/auth/email/verify")

    assert asked.status_code == 403, asked.text
    assert asked.headers["content-type"].startswith("application/problem+json")
    assert asked.json()["code"] == "api_key_not_allowed"
    assert "sign in" in asked.json()["detail"]
    assert container.jobs.jobs == []
    # refused before it was counted: the session still has its 5 requests of the hour
    answers = [
        (await ada.call_signed_in("POST", "/api/auth/email/verify")).status_code for _ in "12345"
    ]
    assert answers == [202] * 5
    token = await _mailed(container)

    by_key = await ada.call("POST", "/api/auth/email/confirm", {"token": token})

    assert by_key.status_code == 403, by_key.text
    assert by_key.json()["code"] == "api_key_not_allowed"
    assert token not in by_key.text
    assert (await ada.call("GET", "/api/auth/me")).json()["emailVerified"] is False
    signed_in = await ada.call_signed_in("POST", "/api/auth/email/confirm", {"token": token})
    assert signed_in.status_code == 200, signed_in.text
    assert (await ada.call("GET", "/api/auth/me")).json()["emailVerified"] is True


async def test_the_document_lists_the_access_token_alone_for_the_verification_routes(
    client: AsyncTestClient[Litestar],
) -> None:
    paths = (await client.get("/api/docs/openapi.json")).json()["paths"]

    for path in ("/api/auth/email/verify", "/api/auth/email/confirm"):
        assert paths[path]["post"]["security"] == SESSION_ONLY_DOCUMENTED, path
        assert "403" in paths[path]["post"]["responses"], path
