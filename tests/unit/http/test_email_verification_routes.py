"""Verifying one's address: /api/auth/email/verify queues a link by email, /confirm uses it.

Through the HTTP app on the fake container; the worker's side (``SendEmailVerificationHandler``)
is run by hand on the queued jobs, its email read from the in-memory outbox.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.unit.http.fakes import FakeContainer
from whalli.domain.model.jobs import SendEmailVerification

PASSWORD = "correct horse battery"
PROBLEM_JSON = "application/problem+json"
LINK = re.compile(r"^http://localhost:3000/verify-email#token=([A-Za-z0-9_.-]+)$", re.M)
RESET_LINK = re.compile(r"^http://localhost:3000/reset-password#token=([A-Za-z0-9_.-]+)$", re.M)


async def _register(client: AsyncTestClient[Litestar], email: str = "ada@example.com") -> Any:
    response = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    body = response.json()
    body["auth"] = {"Authorization": f"Bearer {body['tokens']['accessToken']}"}
    return body


async def _ask(client: AsyncTestClient[Litestar], who: Any) -> Any:
    return await client.post("/api/auth/email/verify", headers=who["auth"])


async def _mailed(container: FakeContainer, link: re.Pattern[str] = LINK) -> str:
    await container.jobs.drain(container.send_queued)
    assert container.email is not None
    assert container.email.outbox, "nothing was sent"
    found = link.search(container.email.outbox[-1].text)
    assert found is not None, container.email.outbox[-1].text
    return found.group(1)


async def _confirm(client: AsyncTestClient[Litestar], token: str, who: Any) -> Any:
    return await client.post("/api/auth/email/confirm", json={"token": token}, headers=who["auth"])


async def _verified(client: AsyncTestClient[Litestar], who: Any) -> bool:
    me = await client.get("/api/auth/me", headers=who["auth"])
    assert me.status_code == 200, me.text
    verified: bool = me.json()["emailVerified"]
    return verified


async def test_a_mailed_link_opened_signed_in_verifies_the_address_and_twice_is_no_error(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    ada = await _register(client)
    assert await _verified(client, ada) is False

    asked = await _ask(client, ada)
    assert asked.status_code == 202, asked.text
    assert [type(job) for job in container.jobs.jobs] == [SendEmailVerification]
    token = await _mailed(container)
    assert container.email is not None
    sent = container.email.outbox[-1]
    assert (sent.to, sent.subject) == ("ada@example.com", "Confirm your email address for Whalli")

    confirmed = await _confirm(client, token, ada)

    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json() == {"email": "ada@example.com", "emailVerified": True}
    assert await _verified(client, ada) is True
    assert (await _confirm(client, token, ada)).status_code == 200
    again = await _ask(client, ada)
    assert again.status_code == 409
    assert again.json()["code"] == "email_already_verified"


async def test_a_forged_expired_or_other_purpose_token_is_one_422_and_verifies_nothing(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    ada = await _register(client)
    await client.post("/api/auth/password/forgot", json={"email": "ada@example.com"})
    reset_token = await _mailed(container, RESET_LINK)
    await _ask(client, ada)
    token = await _mailed(container)
    user_hex, expires, mac = token.split(".")

    for wrong in (
        reset_token,  # a reset link's token is no verification token (nor the other way)
        f"{user_hex}.{int(expires) + 60}.{mac}",
        f"{uuid.uuid4().hex}.{expires}.{mac}",
        "not a token",
    ):
        refused = await _confirm(client, wrong, ada)
        assert refused.status_code == 422, (wrong, refused.text)
        assert refused.headers["content-type"].startswith(PROBLEM_JSON)
        assert refused.json()["code"] == "email_verification_invalid"
        assert wrong not in refused.text
    reset = await client.post(
        "/api/auth/password/reset", json={"token": token, "newPassword": "a new long passphrase"}
    )
    assert reset.status_code == 422
    assert await _verified(client, ada) is False

    container.clock.advance(timedelta(days=1))
    login = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    ada["auth"] = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    assert (await _confirm(client, token, ada)).status_code == 422  # expired
    assert await _verified(client, ada) is False


async def test_the_link_verifies_only_when_opened_by_its_own_account_signed_in(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    # Someone signs up with Ada's address and asks for a link: it reaches Ada's mailbox.
    squatter = await _register(client)
    await _ask(client, squatter)
    token = await _mailed(container)
    ada = await _register(client, "ada.real@example.com")  # Ada, signed in as herself

    by_ada = await _confirm(client, token, ada)
    anonymous = await client.post("/api/auth/email/confirm", json={"token": token})

    assert by_ada.status_code == 422
    assert by_ada.json()["code"] == "email_verification_invalid"
    assert anonymous.status_code == 401
    assert await _verified(client, squatter) is False  # never joined by Ada's OAuth sign-in
    assert await _verified(client, ada) is False


async def test_without_email_the_request_is_a_422_problem_and_queues_nothing(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    ada = await _register(client)
    container.email = None

    refused = await _ask(client, ada)

    assert refused.status_code == 422
    assert refused.json()["code"] == "email_not_configured"
    assert container.jobs.jobs == []


async def test_verification_emails_to_one_account_are_limited(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    ada = await _register(client)

    answers = [(await _ask(client, ada)).status_code for _ in range(6)]

    assert answers == [202] * 5 + [429]
    assert len(container.jobs.jobs) == 5


async def test_a_request_needs_a_signed_in_caller(client: AsyncTestClient[Litestar]) -> None:
    refused = await client.post("/api/auth/email/verify")

    assert refused.status_code == 401


async def test_refused_requests_use_none_of_the_limit(
    container: FakeContainer, client: AsyncTestClient[Litestar]
) -> None:
    """A 409 (already verified) or a 422 (no email) is not counted: once the refusal's cause
    is gone, the account still has its five requests."""
    ada = await _register(client)
    email = container.email
    container.email = None
    assert [(await _ask(client, ada)).status_code for _ in range(6)] == [422] * 6
    container.email = email
    assert [(await _ask(client, ada)).status_code for _ in range(5)] == [202] * 5
    assert (await _ask(client, ada)).status_code == 429

    bob = await _register(client, "bob@example.com")
    assert (await _ask(client, bob)).status_code == 202
    assert (await _confirm(client, await _mailed(container), bob)).status_code == 200
    answers = [(await _ask(client, bob)).status_code for _ in range(6)]
    assert answers == [409] * 6, answers
